//! [`Options`]: how a managed object is created or opened (mode, wait bound, read-only).

use std::marker::PhantomData;
use std::time::Duration;

use crate::managed::pair::{DEFAULT_INIT_TIMEOUT, Params};

/// Options for creating or opening a managed object (`SharedMutex`, ...): permissions,
/// how long to wait for a creator that is still initialising, and (where the type
/// supports it) a read-only attach. Obtained from the type's `options()`; the
/// constructors (`create`, `open`, `open_or_create`) are on `Options<ThatType>`.
///
/// ```
/// use shmsem::{Key, SharedMutex};
/// let m = SharedMutex::<u64>::options().mode(0o660).create(Key::PRIVATE, 0)?;
/// m.remove()?;
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "options do nothing until a constructor is called"]
pub struct Options<L> {
    pub(crate) params: Params,
    _object: PhantomData<fn() -> L>,
}

impl<L> Clone for Options<L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L> Copy for Options<L> {}

impl<L> Default for Options<L> {
    fn default() -> Self {
        Options {
            params: Params {
                mode: 0o600,
                init_timeout: DEFAULT_INIT_TIMEOUT,
                read_only: false,
                allow_owner_without_access: false,
            },
            _object: PhantomData,
        }
    }
}

impl<L> Options<L> {
    /// Permission bits for created objects (both the segment and the semaphore set).
    /// Default `0o600`: owner only. Bits outside `0o777` are `InvalidInput` at creation.
    pub fn mode(mut self, mode: u32) -> Self {
        self.params.mode = mode;
        self
    }

    /// Allow a creation mode that gives the owner neither read nor write permission
    /// (`0o000`, `0o060`, ...), refused by default with `InvalidInput`: only root could
    /// open such an object (the seed tutorial's pitfall, `IPC_CREAT` without permission
    /// bits). Ask for it only if that is the point, e.g. root making an object for a group
    /// it is not in.
    pub fn allow_owner_without_access(mut self, allow: bool) -> Self {
        self.params.allow_owner_without_access = allow;
        self
    }

    /// How long an opener waits for a creator that is still initialising the object
    /// before deciding it is not a shmsem object (`NotManaged`). Default: 1 second.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.params.init_timeout = timeout;
        self
    }
}

/// The constructors every managed handle has, each a call on default [`Options`]:
/// `create`, `open` and `open_or_create`, and `options()` itself. Expanded inside each
/// handle's `impl`, so that the forwarding exists once; the handle writes each one's
/// documentation (what it makes, its errors) and names what `create` and
/// `open_or_create` take besides the key:
///
/// ```text
/// constructors! {
///     /// Creates a new mutex holding `value` ...
///     create(value: T);
///     /// Opens an existing mutex ...
///     open;
///     /// Opens the mutex, or creates it holding `value` ...
///     open_or_create;
///     /// Options: ...
///     options;
/// }
/// ```
macro_rules! constructors {
    (
        $(#[$create:meta])* create($($arg:ident: $ty:ty),*);
        $(#[$open:meta])* open;
        $(#[$open_or_create:meta])* open_or_create;
        $(#[$options:meta])* options;
    ) => {
        $(#[$create])*
        pub fn create(key: $crate::Key $(, $arg: $ty)*) -> $crate::Result<Self> {
            Self::options().create(key $(, $arg)*)
        }

        $(#[$open])*
        pub fn open(key: $crate::Key) -> $crate::Result<Self> {
            Self::options().open(key)
        }

        $(#[$open_or_create])*
        pub fn open_or_create(key: $crate::Key $(, $arg: $ty)*) -> $crate::Result<Self> {
            Self::options().open_or_create(key $(, $arg)*)
        }

        $(#[$options])*
        pub fn options() -> $crate::Options<Self> {
            $crate::Options::default()
        }
    };
}
pub(crate) use constructors;
