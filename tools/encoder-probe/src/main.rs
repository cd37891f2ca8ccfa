//! Does a learned sequence encoder beat the served model? A SASRec-style causal transformer
//! (pre-norm attention blocks, learned positions, item embeddings tied to the output layer)
//! trained with a full softmax cross-entropy over the catalog, with candle on the CPU.
//!
//! Protocol (as `central-sync eval`): per user, events by time (stable: ties keep file order);
//! validation target = the second-to-last event (`TEST=1`: the last), trained on everything
//! before it; the encoder sees the last `L` events (the edge's session holds 24); full ranking
//! with the user's history excluded; NDCG@10. Printed every 5 epochs: the encoder alone, the
//! encoder plus `alpha ×` item-kNN (cosine over users, last 5 events, 0.7^k, as the baseline of
//! `eval`) for several alphas, and item-kNN alone.
//!
//! Settings from the environment: D (32), L (24), BLOCKS (1), EPOCHS (15), BATCH (128),
//! LR (0.005), DROPOUT (0.2), TEST (0), RAYON_NUM_THREADS (set 1 for the one-core budget).

use candle_core::{DType, Device, IndexOp, Result, Tensor, D};
use candle_nn::{
    layer_norm, linear, Embedding, Init, LayerNorm, Linear, Module, Optimizer, VarBuilder, VarMap,
};
use std::collections::HashMap;
use std::time::Instant;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Block {
    norm_attention: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    norm_ffn: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
}

struct Encoder {
    items: Embedding,
    positions: Embedding,
    blocks: Vec<Block>,
    norm: LayerNorm,
    bias: Tensor,
    dim: usize,
}

/// One batch: item ids `[B, L]` right-aligned (padding = the catalog size on the left), the
/// additive attention mask `[B, L, L]` (causal, no padding keys), the padding mask `[B, L, 1]`,
/// and for training the next item at each position with a 0/1 weight.
struct Batch {
    ids: Tensor,
    mask: Tensor,
    keep: Tensor,
    targets: Tensor,
    weights: Tensor,
}

impl Encoder {
    fn new(vb: VarBuilder, n_items: usize, dim: usize, len: usize, blocks: usize) -> Result<Self> {
        let small = Init::Randn {
            mean: 0.0,
            stdev: 0.1,
        };
        let items = vb
            .pp("items")
            .get_with_hints((n_items + 1, dim), "weight", small)?;
        let positions = vb
            .pp("positions")
            .get_with_hints((len, dim), "weight", small)?;
        let blocks = (0..blocks)
            .map(|b| {
                let vb = vb.pp(format!("block{b}"));
                Ok(Block {
                    norm_attention: layer_norm(dim, 1e-6, vb.pp("norm_attention"))?,
                    query: linear(dim, dim, vb.pp("query"))?,
                    key: linear(dim, dim, vb.pp("key"))?,
                    value: linear(dim, dim, vb.pp("value"))?,
                    norm_ffn: layer_norm(dim, 1e-6, vb.pp("norm_ffn"))?,
                    ffn_in: linear(dim, dim, vb.pp("ffn_in"))?,
                    ffn_out: linear(dim, dim, vb.pp("ffn_out"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            items: Embedding::new(items, dim),
            positions: Embedding::new(positions, dim),
            blocks,
            norm: layer_norm(dim, 1e-6, vb.pp("norm"))?,
            bias: vb.get_with_hints(n_items + 1, "bias", Init::Const(0.0))?,
            dim,
        })
    }

    /// The encoder's output at every position, `[B, L, dim]`.
    fn hidden(&self, b: &Batch, dropout: f32) -> Result<Tensor> {
        let drop = |x: Tensor| {
            if dropout > 0.0 {
                candle_nn::ops::dropout(&x, dropout)
            } else {
                Ok(x)
            }
        };
        let len = b.ids.dim(1)?;
        let at = Tensor::arange(0u32, len as u32, b.ids.device())?;
        let mut x = self
            .items
            .forward(&b.ids)?
            .broadcast_add(&self.positions.forward(&at)?)?;
        x = drop(x)?.broadcast_mul(&b.keep)?;
        let scale = 1.0 / (self.dim as f64).sqrt();
        for block in &self.blocks {
            let normed = block.norm_attention.forward(&x)?;
            let q = block.query.forward(&normed)?;
            let k = block.key.forward(&x)?;
            let v = block.value.forward(&x)?;
            let scores = q
                .matmul(&k.transpose(1, 2)?.contiguous()?)?
                .affine(scale, 0.0)?
                .broadcast_add(&b.mask)?;
            let attention = drop(candle_nn::ops::softmax_last_dim(&scores)?)?;
            x = (normed + attention.matmul(&v)?)?;
            let normed = block.norm_ffn.forward(&x)?;
            let ffn = block
                .ffn_out
                .forward(&block.ffn_in.forward(&normed)?.relu()?)?;
            x = (normed + drop(ffn)?)?.broadcast_mul(&b.keep)?;
        }
        self.norm.forward(&x)
    }

    /// Scores of every item (and the padding id) as the next event after each sequence (its
    /// last `len` events), without dropout.
    fn next_item_logits(&self, seqs: &[&[u32]], len: usize, pad: u32) -> Result<Tensor> {
        let b = batch(seqs, len, pad, false, self.bias.device())?;
        let last = self.hidden(&b, 0.0)?.i((.., len - 1, ..))?.contiguous()?;
        self.logits(&last)
    }

    /// Scores of every item (and the padding id) for each row of `hidden` `[R, dim]`.
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden
            .matmul(&self.items.embeddings().t()?)?
            .broadcast_add(&self.bias)
    }
}

/// Builds a batch from sequences; with `next_item`, each sequence's last event is only a target.
fn batch(seqs: &[&[u32]], len: usize, pad: u32, next_item: bool, dev: &Device) -> Result<Batch> {
    let rows = seqs.len();
    let mut ids = vec![pad; rows * len];
    let mut targets = vec![0u32; rows * len];
    let mut weights = vec![0f32; rows * len];
    let mut keep = vec![0f32; rows * len];
    let mut mask = vec![-1e9f32; rows * len * len];
    for (r, s) in seqs.iter().enumerate() {
        let input = if next_item { &s[..s.len() - 1] } else { s };
        let input = &input[input.len().saturating_sub(len)..];
        let offset = len - input.len();
        for (k, &item) in input.iter().enumerate() {
            let at = r * len + offset + k;
            ids[at] = item;
            keep[at] = 1.0;
            if next_item {
                targets[at] = s[s.len() - input.len() + k];
                weights[at] = 1.0;
            }
        }
        for i in 0..len {
            // Real positions see real positions up to themselves; padding sees only itself
            // (its output is masked out), which keeps every softmax finite.
            let visible = if i < offset { i..i + 1 } else { offset..i + 1 };
            for j in visible {
                mask[(r * len + i) * len + j] = 0.0;
            }
        }
    }
    Ok(Batch {
        ids: Tensor::from_vec(ids, (rows, len), dev)?,
        mask: Tensor::from_vec(mask, (rows, len, len), dev)?,
        keep: Tensor::from_vec(keep, (rows, len, 1), dev)?,
        targets: Tensor::from_vec(targets, rows * len, dev)?,
        weights: Tensor::from_vec(weights, rows * len, dev)?,
    })
}

/// Per user, item indices by time (ties keep file order); the item ids by index; the user ids.
fn read_sequences(path: &str) -> (Vec<Vec<u32>>, Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut users: HashMap<&str, Vec<(i64, usize, u32)>> = HashMap::new();
    let mut first_seen = Vec::new();
    let mut items: HashMap<&str, u32> = HashMap::new();
    for (row, line) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let next = items.len() as u32;
        let item = *items.entry(f[1]).or_insert(next);
        let ts: i64 = f[2]
            .parse()
            .unwrap_or_else(|_| panic!("line {}: bad time", row + 2));
        users
            .entry(f[0])
            .or_insert_with(|| {
                first_seen.push(f[0]);
                Vec::new()
            })
            .push((ts, row, item));
    }
    let seqs = first_seen
        .iter()
        .map(|u| {
            let mut events = users[u].clone();
            events.sort_by_key(|e| (e.0, e.1));
            events.into_iter().map(|e| e.2).collect()
        })
        .collect();
    let mut ids = vec![String::new(); items.len()];
    for (id, &i) in &items {
        ids[i as usize] = (*id).to_string();
    }
    (
        seqs,
        ids,
        first_seen.iter().map(|u| u.to_string()).collect(),
    )
}

/// Cosine item neighbours over users' item sets (all of them, as the `eval` baseline).
fn cosine_neighbours(n: usize, train: &[&[u32]]) -> Vec<Vec<(u32, f32)>> {
    let sets: Vec<Vec<u32>> = train
        .iter()
        .map(|s| {
            let mut v = s.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let mut users_of = vec![Vec::new(); n];
    for (u, set) in sets.iter().enumerate() {
        for &i in set {
            users_of[i as usize].push(u);
        }
    }
    (0..n)
        .map(|i| {
            let mut co = vec![0f32; n];
            for &u in &users_of[i] {
                for &j in &sets[u] {
                    co[j as usize] += f32::from(j as usize != i);
                }
            }
            let norm = |k: usize| (users_of[k].len() as f32).sqrt();
            co.iter()
                .enumerate()
                .filter(|e| *e.1 > 0.0)
                .map(|(j, &c)| (j as u32, c / (norm(i) * norm(j))))
                .collect()
        })
        .collect()
}

/// NDCG@10 of one target under `scores` (higher first, ties by index), history excluded.
fn ndcg10(scores: &mut [f32], history: &[u32], target: u32) -> f64 {
    for &h in history {
        scores[h as usize] = f32::NEG_INFINITY;
    }
    let t = target as usize;
    let better = scores
        .iter()
        .enumerate()
        .filter(|&(j, &v)| v > scores[t] || (v == scores[t] && j < t))
        .count();
    if better < 10 {
        1.0 / ((better + 2) as f64).log2()
    } else {
        0.0
    }
}

const ALPHAS: [f32; 6] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0];

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/ml-100k/events.csv".into());
    let dim: usize = setting("D", 32);
    let len: usize = setting("L", 24);
    let blocks: usize = setting("BLOCKS", 1);
    let epochs: usize = setting("EPOCHS", 15);
    let batch_size: usize = setting("BATCH", 128);
    let lr: f64 = setting("LR", 0.005);
    let dropout: f32 = setting("DROPOUT", 0.2);
    let test = setting("TEST", 0) == 1;

    let (seqs_all, item_ids, user_ids) = read_sequences(&path);
    let n = item_ids.len();
    let (seqs, user_ids): (Vec<Vec<u32>>, Vec<String>) = seqs_all
        .into_iter()
        .zip(user_ids)
        .filter(|(s, _)| s.len() >= 3)
        .unzip();
    let cut = if test { 1 } else { 2 };
    let train: Vec<&[u32]> = seqs.iter().map(|s| &s[..s.len() - cut]).collect();
    let targets: Vec<u32> = seqs.iter().map(|s| s[s.len() - cut]).collect();
    // Training windows of len + 1 events, from each sequence's end backwards, overlapping by one
    // event so every event after a user's first is a target exactly once.
    let mut windows: Vec<&[u32]> = Vec::new();
    for s in &train {
        let mut end = s.len();
        while end >= 2 {
            let start = end.saturating_sub(len + 1);
            windows.push(&s[start..end]);
            if start == 0 {
                break;
            }
            end = start + 1;
        }
    }
    let knn = cosine_neighbours(n, &train);
    println!(
        "[encoder-probe] {} users, {n} items, {} windows; D={dim} L={len} BLOCKS={blocks} \
         LR={lr} DROPOUT={dropout} BATCH={batch_size}; scored on {}",
        seqs.len(),
        windows.len(),
        if test { "test" } else { "validation" }
    );

    let dev = Device::Cpu;
    let vars = VarMap::new();
    let encoder = Encoder::new(
        VarBuilder::from_varmap(&vars, DType::F32, &dev),
        n,
        dim,
        len,
        blocks,
    )?;
    let mut opt = candle_nn::AdamW::new(
        vars.all_vars(),
        candle_nn::ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let pad = n as u32;

    let evaluate = |encoder: &Encoder| -> Result<(Vec<f64>, f64)> {
        let mut with_knn = [0.0f64; ALPHAS.len()];
        let mut knn_only = 0.0;
        let users: Vec<usize> = (0..train.len()).collect();
        for chunk in users.chunks(256) {
            let seqs: Vec<&[u32]> = chunk.iter().map(|&u| train[u]).collect();
            let logits: Vec<Vec<f32>> = encoder.next_item_logits(&seqs, len, pad)?.to_vec2()?;
            for (row, &u) in logits.iter().zip(chunk) {
                let mut neighbours = vec![0f32; n + 1];
                let mut w = 1.0;
                for &h in train[u].iter().rev().take(5) {
                    for &(j, c) in &knn[h as usize] {
                        neighbours[j as usize] += w * c;
                    }
                    w *= 0.7;
                }
                neighbours[n] = f32::NEG_INFINITY;
                for (total, alpha) in with_knn.iter_mut().zip(ALPHAS) {
                    let mut scores: Vec<f32> = row
                        .iter()
                        .zip(&neighbours)
                        .map(|(x, k)| x + alpha * k)
                        .collect();
                    *total += ndcg10(&mut scores, train[u], targets[u]);
                }
                knn_only += ndcg10(&mut neighbours, train[u], targets[u]);
            }
        }
        let users = train.len() as f64;
        Ok((
            with_knn.iter().map(|t| t / users).collect(),
            knn_only / users,
        ))
    };

    let started = Instant::now();
    let mut order: Vec<usize> = (0..windows.len()).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for epoch in 1..=epochs {
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let mut loss_sum = 0.0;
        let chunks = order.chunks(batch_size);
        let batches = chunks.len();
        for chunk in chunks {
            let seqs: Vec<&[u32]> = chunk.iter().map(|&i| windows[i]).collect();
            let b = batch(&seqs, len, pad, true, &dev)?;
            let hidden = encoder
                .hidden(&b, dropout)?
                .reshape((seqs.len() * len, dim))?;
            let log_p = candle_nn::ops::log_softmax(&encoder.logits(&hidden)?, D::Minus1)?;
            let picked = log_p.gather(&b.targets.unsqueeze(1)?, 1)?.squeeze(1)?;
            let count = f64::from(b.weights.sum_all()?.to_scalar::<f32>()?);
            let loss = (picked.mul(&b.weights)?.sum_all()? / count)?.neg()?;
            opt.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
        }
        let seconds = started.elapsed().as_secs_f64();
        if epoch % 5 == 0 || epoch == epochs {
            let (with_knn, knn_only) = evaluate(&encoder)?;
            let blends: Vec<String> = ALPHAS
                .iter()
                .zip(&with_knn)
                .skip(1)
                .map(|(a, x)| format!("{a}: {x:.4}"))
                .collect();
            println!(
                "[encoder-probe] epoch {epoch} loss {:.4} train {seconds:.0} s | NDCG@10 encoder \
                 {:.4} | + alpha x item-kNN {} | item-kNN {knn_only:.4}",
                loss_sum / batches as f64,
                with_knn[0],
                blends.join(", ")
            );
        }
    }
    // DUMP=path: every evaluated user's log-softmax over the catalog after training, as text
    // (line 1: the item ids; then one line per user: the user id and one score per item), so
    // another program can blend the encoder's scores with the served model's.
    if let Ok(out) = std::env::var("DUMP") {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&out).expect("DUMP file"));
        writeln!(w, "{}", item_ids.join("\t")).expect("write");
        let users: Vec<usize> = (0..train.len()).collect();
        for chunk in users.chunks(256) {
            let seqs: Vec<&[u32]> = chunk.iter().map(|&u| train[u]).collect();
            let logits = encoder.next_item_logits(&seqs, len, pad)?.narrow(1, 0, n)?;
            let log_p: Vec<Vec<f32>> =
                candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec2()?;
            for (row, &u) in log_p.iter().zip(chunk) {
                let cells: Vec<String> = row.iter().map(|x| format!("{x:.5}")).collect();
                writeln!(w, "{}\t{}", user_ids[u], cells.join("\t")).expect("write");
            }
        }
        println!("[encoder-probe] scores written to {out}");
    }
    Ok(())
}
