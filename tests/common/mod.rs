//! The test files' name for the shared test support: `mod common;` then `use common::...`.
//! Everything is in the `shmsem-test-common` crate beside this file (tests/common/src),
//! a library of its own so that a test binary using part of it is not told the rest is
//! dead code; most of it is `shmsem::testing` (feature `testing`), re-exported there.

pub use shmsem_test_common::*;
