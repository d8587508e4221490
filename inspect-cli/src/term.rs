//! The plain terminal under `top`: keys read one by one without echo (termios), the
//! alternate screen, the window size, and the signals that end or redraw the view.
//! Whatever it changes is put back when the [`Terminal`] is dropped, also when `top`
//! ends with an error or a signal.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by SIGTERM, SIGHUP, SIGINT (with keys read raw, Ctrl-C is a key instead).
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGWINCH: the window changed size.
static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_resize(_: libc::c_int) {
    RESIZED.store(true, Ordering::Relaxed);
}

/// Installs the handlers, without `SA_RESTART`, so a `poll` waiting for a key returns
/// `EINTR` and the view can end cleanly (restoring the terminal) or redraw.
pub(crate) fn install_signal_handlers() {
    for (sig, handler) in [
        (libc::SIGTERM, on_stop as extern "C" fn(libc::c_int)),
        (libc::SIGHUP, on_stop),
        (libc::SIGINT, on_stop),
        (libc::SIGWINCH, on_resize),
    ] {
        // SAFETY: sigaction is plain data; all-zero is a valid start (empty mask, no
        // flags).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = handler as libc::sighandler_t;
        // SAFETY: sa_mask is a live sigset_t; the handlers only store to an atomic
        // (async-signal-safe).
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Is `fd` a terminal?
pub(crate) fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only looks at the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// The terminal while `top` runs.
pub(crate) struct Terminal {
    /// Standard input's settings before raw keys were switched on.
    saved: Option<libc::termios>,
    /// Whether the alternate screen is on.
    screen: bool,
}

impl Terminal {
    /// Reads keys raw (no line editing, no echo, Ctrl-C as a key) if `keys`, and switches
    /// to the alternate screen with the cursor hidden if `screen`.
    pub(crate) fn open(keys: bool, screen: bool) -> Terminal {
        let mut saved = None;
        if keys {
            // SAFETY: termios is plain data; tcgetattr fills it in.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: a live termios for standard input's settings.
            if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } == 0 {
                let mut raw = t;
                raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
                raw.c_cc[libc::VMIN] = 1;
                raw.c_cc[libc::VTIME] = 0;
                // SAFETY: sets standard input's settings from a live termios.
                if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } == 0 {
                    saved = Some(t);
                }
            }
        }
        if screen {
            print!("\x1b[?1049h\x1b[?25l");
            std::io::stdout().flush().ok();
        }
        Terminal { saved, screen }
    }

    /// Are keys read raw (standard input is a terminal, switched to raw keys)?
    pub(crate) fn reads_keys(&self) -> bool {
        self.saved.is_some()
    }

    /// Replaces the screen with `frame`.
    pub(crate) fn draw(&self, frame: &str) {
        let mut out = std::io::stdout().lock();
        if self.screen {
            // Home, clear; in raw mode the output side still turns \n into \r\n.
            write!(out, "\x1b[H\x1b[2J{frame}").ok();
        } else {
            writeln!(out, "{frame}").ok();
        }
        out.flush().ok();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.screen {
            print!("\x1b[?25h\x1b[?1049l");
            std::io::stdout().flush().ok();
        }
        if let Some(t) = self.saved {
            // SAFETY: puts back the settings read in open.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) };
        }
    }
}

/// The window's (columns, rows), if standard output is a terminal.
pub(crate) fn window_size() -> Option<(usize, usize)> {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it in.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, a live local.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0)
        .then(|| (usize::from(ws.ws_col), usize::from(ws.ws_row)))
}

/// What ended a wait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A key (one byte of input).
    Key(u8),
    /// The deadline passed.
    Timeout,
    /// A signal asked the view to end.
    Stop,
    /// The window changed size.
    Resized,
    /// Standard input ended (no more keys will come).
    Closed,
}

/// Waits until `deadline` for a key on standard input (if `keys`) or a signal.
pub(crate) fn wait(deadline: Instant, keys: bool) -> Event {
    loop {
        if STOP.swap(false, Ordering::Relaxed) {
            return Event::Stop;
        }
        if RESIZED.swap(false, Ordering::Relaxed) {
            return Event::Resized;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Event::Timeout;
        }
        let mut pfd = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        let nfds = if keys { 1 } else { 0 };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one live pollfd (or none, when nfds is 0).
        let rc = unsafe { libc::poll(&mut pfd, nfds, ms) };
        if rc < 0 {
            // EINTR: a signal; the flags above say which.
            continue;
        }
        if rc == 0 {
            continue;
        }
        let mut b = [0u8];
        // SAFETY: reads one byte into a live local.
        let n = unsafe { libc::read(libc::STDIN_FILENO, b.as_mut_ptr().cast(), 1) };
        match n {
            1 => return Event::Key(b[0]),
            0 => return Event::Closed,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return Event::Closed,
        }
    }
}
