//! A bounded min-heap keeping the best `cap` (score, item) pairs seen so far.
//!
//! The scan asks for [`TopK::threshold`] and only touches the heap for the few items that beat
//! it, which is what makes selection nearly free next to the dot products ("fused" scan + top-K).
//! Ties are broken by the lower item index, so rankings are deterministic.

/// Best-`cap` selection.
#[derive(Debug, Clone)]
pub struct TopK {
    cap: usize,
    heap: Vec<(f32, u32)>,
}

/// `a` ranks below `b`: lower score, or equal score and higher index.
#[inline]
fn worse(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
}

impl TopK {
    /// An empty selection of at most `cap` items.
    pub fn new(cap: usize) -> TopK {
        TopK {
            cap,
            heap: Vec::with_capacity(cap),
        }
    }

    /// The most items kept.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Scores at or below this cannot enter (−∞ until the heap is full).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.cap {
            f32::NEG_INFINITY
        } else {
            self.heap.first().map_or(f32::INFINITY, |e| e.0)
        }
    }

    /// Offers an item.
    pub fn push(&mut self, score: f32, index: u32) {
        let e = (score, index);
        if self.heap.len() < self.cap {
            self.heap.push(e);
            let mut i = self.heap.len() - 1;
            while i > 0 {
                let parent = (i - 1) / 2;
                if worse(self.heap[i], self.heap[parent]) {
                    self.heap.swap(i, parent);
                    i = parent;
                } else {
                    break;
                }
            }
        } else if self.cap > 0 && worse(self.heap[0], e) {
            self.heap[0] = e;
            let n = self.heap.len();
            let mut i = 0;
            loop {
                let (l, r) = (2 * i + 1, 2 * i + 2);
                let mut m = i;
                if l < n && worse(self.heap[l], self.heap[m]) {
                    m = l;
                }
                if r < n && worse(self.heap[r], self.heap[m]) {
                    m = r;
                }
                if m == i {
                    break;
                }
                self.heap.swap(i, m);
                i = m;
            }
        }
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The held items, best first.
    pub fn into_sorted(mut self) -> Vec<(f32, u32)> {
        self.heap
            .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        self.heap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn equals_full_sort(scores in proptest::collection::vec(-100i32..100, 0..300), cap in 0usize..20) {
            let mut top = TopK::new(cap);
            for (i, &s) in scores.iter().enumerate() {
                if (s as f32) > top.threshold() || top.len() < cap {
                    top.push(s as f32, i as u32);
                }
            }
            let mut all: Vec<(f32, u32)> = scores.iter().enumerate().map(|(i, &s)| (s as f32, i as u32)).collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            all.truncate(cap);
            prop_assert_eq!(top.into_sorted(), all);
        }
    }
}
