//! What `models/current` says: one version (`v1764...`, the text it always held), or an A/B
//! split of several versions with traffic weights, written as `v1=90,v2=10` (the syntax of
//! `central-sync publish --split`). The first arm is the primary: what `/v1/model` offers
//! browsers and what `sync` compares candidates with.
//!
//! Visitors are assigned stickily: a hash of their visitor id and the split's versions picks a
//! bucket in `0..BUCKETS`, and the arms own consecutive bucket ranges in proportion to their
//! weights. Changing weights moves only the visitors whose buckets change owner; a new set of
//! versions reshuffles everyone (a new experiment). An edge from before splits reads a split
//! pointer as a missing version and keeps serving the model it has.

use edgerec::hash::text_key;

/// Assignment resolution: weights are shares of this many buckets.
pub const BUCKETS: u64 = 10_000;
/// The most arms a split may have (each is a model in every isolate's memory).
pub const MAX_ARMS: usize = 4;

/// One arm of the pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm {
    pub version: String,
    pub weight: u32,
}

/// A parsed `models/current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    arms: Vec<Arm>,
}

/// Whether `name` can be a version: what the KV key layout and the shard URLs allow.
pub fn valid_version(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Pointer {
    /// The pointer of one version.
    pub fn single(version: &str) -> Pointer {
        Pointer {
            arms: vec![Arm {
                version: version.to_string(),
                weight: 1,
            }],
        }
    }

    /// Parses `VERSION` or `V1=W1,V2=W2,...` (whitespace around parts ignored).
    ///
    /// # Errors
    /// A sentence naming what is wrong: a bad version name, a weight that is not a whole
    /// number in 1..=10000, a version listed twice, more than [`MAX_ARMS`] arms.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        let text = text.trim();
        if !text.contains('=') {
            if !valid_version(text) {
                return Err(format!("{text:?} is not a version name"));
            }
            return Ok(Pointer::single(text));
        }
        let mut arms: Vec<Arm> = Vec::new();
        for part in text.split(',') {
            let (version, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: an arm is VERSION=WEIGHT"))?;
            let (version, weight) = (version.trim(), weight.trim());
            if !valid_version(version) {
                return Err(format!("{version:?} is not a version name"));
            }
            let weight: u32 = weight
                .parse()
                .ok()
                .filter(|w| (1..=BUCKETS as u32).contains(w))
                .ok_or_else(|| {
                    format!("{version}: weight {weight:?} is not a whole number in 1..={BUCKETS}")
                })?;
            if arms.iter().any(|a| a.version == version) {
                return Err(format!("{version} is listed twice"));
            }
            arms.push(Arm {
                version: version.to_string(),
                weight,
            });
        }
        if arms.len() > MAX_ARMS {
            return Err(format!(
                "{} arms; a split has at most {MAX_ARMS}",
                arms.len()
            ));
        }
        Ok(Pointer { arms })
    }

    pub fn arms(&self) -> &[Arm] {
        &self.arms
    }

    /// The first arm's version.
    pub fn primary(&self) -> &str {
        &self.arms[0].version
    }

    /// More than one arm: lists carry their arm in the exposure log.
    pub fn is_split(&self) -> bool {
        self.arms.len() > 1
    }

    pub fn versions(&self) -> impl Iterator<Item = &str> {
        self.arms.iter().map(|a| a.version.as_str())
    }

    /// The arm of visitor `unit`: the same for the same visitor while the split's versions
    /// stay the same.
    pub fn assign(&self, unit: u64) -> &Arm {
        if self.arms.len() == 1 {
            return &self.arms[0];
        }
        let salt: Vec<&str> = self.versions().collect();
        let bucket = text_key(&format!("{unit:016x}|{}", salt.join(","))) % BUCKETS;
        let total: u64 = self.arms.iter().map(|a| u64::from(a.weight)).sum();
        let mut upper = 0u64;
        for arm in &self.arms {
            upper += u64::from(arm.weight);
            // The arm owns buckets below its cumulative share of BUCKETS.
            if bucket < upper * BUCKETS / total {
                return arm;
            }
        }
        &self.arms[self.arms.len() - 1]
    }
}

impl core::fmt::Display for Pointer {
    /// The text `models/current` holds: the bare version for one arm.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if !self.is_split() {
            return f.write_str(self.primary());
        }
        for (i, a) in self.arms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", a.version, a.weight)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_version_or_weighted_arms() {
        let one = Pointer::parse(" v1764-ab12\n").unwrap();
        assert_eq!((one.primary(), one.is_split()), ("v1764-ab12", false));
        assert_eq!(one.to_string(), "v1764-ab12");
        let split = Pointer::parse("v1=90, v2=10").unwrap();
        assert_eq!(split.to_string(), "v1=90,v2=10");
        assert_eq!(Pointer::parse(&split.to_string()).unwrap(), split);
        assert_eq!(split.primary(), "v1");
        for bad in [
            "",
            "v1=0",
            "v1=x",
            "v1=10001",
            "v1=5,v1=5",
            "a/b",
            "v.1=5",
            "v1=1,v2=1,v3=1,v4=1,v5=1",
        ] {
            assert!(Pointer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn assignment_is_sticky_and_follows_the_weights() {
        let split = Pointer::parse("v1=90,v2=10").unwrap();
        let n = 20_000u64;
        let to_v2 = (0..n)
            .filter(|&u| split.assign(u.wrapping_mul(0x9e37_79b9_7f4a_7c15)).version == "v2")
            .count() as f64;
        let share = to_v2 / n as f64;
        assert!((share - 0.10).abs() < 0.01, "{share}");
        // Sticky: the same visitor, the same arm.
        assert!((0..100u64).all(|u| split.assign(u).version == split.assign(u).version));
        // Raising v2's weight only moves visitors from v1 to v2.
        let wider = Pointer::parse("v1=80,v2=20").unwrap();
        assert!((0..n).all(|u| split.assign(u).version != "v2" || wider.assign(u).version == "v2"));
        assert_eq!(Pointer::single("v9").assign(7).version, "v9");
    }
}
