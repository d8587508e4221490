//! [`shmsem::testing::fork`]'s children with their pid as a field (`child.pid`), as the
//! test files read it since before the module existed; everything else is the module's
//! [`Child`](shmsem::testing::Child), reached through `Deref`.

use std::ops::{Deref, DerefMut};

use shmsem::testing;

/// A forked child: [`shmsem::testing::Child`] plus a `pid` field.
pub struct Child {
    pub pid: i32,
    inner: testing::Child,
}

impl From<testing::Child> for Child {
    fn from(inner: testing::Child) -> Child {
        Child {
            pid: inner.pid(),
            inner,
        }
    }
}

impl Deref for Child {
    type Target = testing::Child;
    fn deref(&self) -> &testing::Child {
        &self.inner
    }
}

impl DerefMut for Child {
    fn deref_mut(&mut self) -> &mut testing::Child {
        &mut self.inner
    }
}

impl Child {
    /// [`testing::Child::join`] (which takes the child by value, so `Deref` cannot reach it).
    pub fn join(self) -> i32 {
        self.inner.join()
    }
}

/// [`shmsem::testing::fork`].
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    testing::fork(f).into()
}

/// [`shmsem::testing::fork_as_nobody`].
pub fn fork_as_nobody(f: impl FnOnce() -> i32) -> Child {
    testing::fork_as_nobody(f).into()
}
