//! What the unit tests of several modules share.

use rand::SeedableRng as _;
use rand::rngs::StdRng;

/// The same random sequence on every run, so a test that samples is repeatable.
pub(crate) fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}
