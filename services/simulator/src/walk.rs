//! A bounded random walk: how every simulated reading wanders, free of I/O.

use rand::Rng;

/// A value that moves by up to `step` each move, is pulled back toward `home` by `pull` (the
/// share of the gap closed per move, 0 for none), and never leaves `min..=max`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomWalk {
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub step: f64,
    pub home: f64,
    pub pull: f64,
}

impl RandomWalk {
    /// A walk starting at `value` (clamped into the range) with no pull.
    pub fn new(value: f64, min: f64, max: f64, step: f64) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let value = value.clamp(min, max);
        Self {
            value,
            min,
            max,
            step: step.abs(),
            home: value,
            pull: 0.0,
        }
    }

    /// The same walk, pulled toward `home` by `pull` per move (clamped to `0..=1`).
    pub fn pulled_toward(mut self, home: f64, pull: f64) -> Self {
        self.home = home.clamp(self.min, self.max);
        self.pull = pull.clamp(0.0, 1.0);
        self
    }

    /// Moves once and returns the new value.
    pub fn advance(&mut self, rng: &mut impl Rng) -> f64 {
        let jitter = if self.step > 0.0 {
            rng.random_range(-self.step..=self.step)
        } else {
            0.0
        };
        let pulled = self.value + (self.home - self.value) * self.pull;
        self.value = (pulled + jitter).clamp(self.min, self.max);
        self.value
    }

    /// Jumps to `value`, clamped into the range.
    pub fn set(&mut self, value: f64) {
        self.value = value.clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::testing::rng;

    #[test]
    fn walk_stays_within_bounds() {
        let mut rng = rng();
        let walks = [
            RandomWalk::new(20.0, -20.0, 60.0, 0.5),
            RandomWalk::new(0.0, 0.0, 1.0, 5.0),
            RandomWalk::new(500.0, 0.0, 100.0, 3.0),
            RandomWalk::new(50.0, 100.0, 0.0, 3.0),
            RandomWalk::new(-80.0, -120.0, -40.0, 2.0).pulled_toward(-60.0, 0.01),
            RandomWalk::new(1.0, 0.0, 2.0, 0.0),
        ];
        for mut walk in walks {
            assert!(walk.min <= walk.max);
            assert!((walk.min..=walk.max).contains(&walk.value));
            for _ in 0..10_000 {
                let before = walk.value;
                let v = walk.advance(&mut rng);
                assert!((walk.min..=walk.max).contains(&v), "{walk:?}");
                assert!(
                    (v - before).abs() <= walk.step + (walk.home - before).abs() * walk.pull + 1e-9
                );
            }
        }
    }

    #[test]
    fn walk_moves_and_is_pulled_home() {
        let mut rng = rng();
        let mut walk = RandomWalk::new(45.0, -20.0, 60.0, 0.5).pulled_toward(22.0, 0.01);
        let values: Vec<f64> = (0..10_000).map(|_| walk.advance(&mut rng)).collect();
        let distinct: HashSet<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() > 9_000, "the walk barely moves");
        let tail = &values[5_000..];
        let mean = tail.iter().sum::<f64>() / tail.len() as f64;
        assert!((mean - 22.0).abs() < 3.0, "mean {mean} far from home");
        walk.set(1e9);
        assert_eq!(walk.value, 60.0);
    }
}
