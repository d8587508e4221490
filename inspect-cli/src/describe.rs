//! Short words for what a record says, shared by `list`, `show` and `top`: a process, a
//! lock's state, a queue's depth, a poisoning.

use crate::model::{ManagedJson, PoisonJson, ProcessJson, QueueJson, SegmentJson};

/// `1234 (alive)`; a pid this namespace cannot see: `? (alive)`.
pub(crate) fn process(p: &ProcessJson) -> String {
    match p.pid {
        pid if pid > 0 => format!("{pid} ({})", p.state),
        _ => format!("? ({})", p.state),
    }
}

/// A count and a noun, plural when it is not 1: `1 reader`, `2 readers`.
pub(crate) fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    match n {
        1 => format!("1 {noun}"),
        _ if noun.ends_with('s') => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

/// What the object's semaphores and control block say, in a few words: `free`,
/// `locked`, `2 readers inside`, `open`, `1 waiting`.
pub(crate) fn state(m: &ManagedJson) -> Option<String> {
    if let Some(x) = &m.mutex {
        return x
            .locked
            .map(|l| if l { "locked" } else { "free" }.to_string());
    }
    if let Some(x) = &m.rwlock {
        let (writer, readers, queued) = (x.writer_inside?, x.readers_inside?, x.writers_queued?);
        let mut parts = Vec::new();
        if writer {
            parts.push("write-locked".to_string());
        } else if readers > 0 {
            parts.push(format!("{} inside", count(readers as u64, "reader")));
        }
        if queued > 0 {
            parts.push(format!("{} queued", count(queued as u64, "writer")));
        }
        if parts.is_empty() {
            parts.push("free".into());
        }
        return Some(parts.join(", "));
    }
    if let Some(q) = &m.queue {
        return Some(q.state.to_string());
    }
    if let Some(c) = &m.condvar {
        let waiting = c.waiting?;
        return Some(match c.pending_wakeups {
            Some(n) if n > 0 => format!("{waiting} waiting, {n} wake-up(s) not yet taken"),
            _ => format!("{waiting} waiting"),
        });
    }
    None
}

/// `3 msgs (48 B)`; `? msgs (48 B)` when they could not be counted.
pub(crate) fn depth(q: &QueueJson) -> String {
    let msgs = q
        .messages_waiting
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    format!("{msgs} msgs ({} B)", q.bytes_waiting)
}

/// `by 1234 (dead), died` and whether it is recorded yet.
pub(crate) fn poison(p: &PoisonJson) -> String {
    let how = match p.cause {
        "panicked" => "a panic inside its critical section",
        _ if p.recorded => "its process died inside its critical section",
        _ => "its process died inside its critical section (the next locker is told)",
    };
    format!("by {}: {how}", process(&p.by))
}

/// The SHMSEM column of `list`: one line on what shmsem sees in a segment.
pub(crate) fn summary(s: &SegmentJson) -> String {
    let Some(m) = &s.shmsem else {
        return match s.contents {
            "no_permission" => "no permission".into(),
            "gone" => "(removed meanwhile)".into(),
            "unreadable" => format!("unreadable: {}", s.detail.as_deref().unwrap_or("")),
            _ => "-".into(),
        };
    };
    let mut parts = vec![match &m.queue {
        Some(q) => format!("queue of {} B", q.capacity),
        None => format!("{} {}B", m.kind, m.payload.size),
    }];
    if let Some(q) = &m.queue {
        parts.push(q.state.to_string());
        parts.push(depth(q));
    } else if let Some(state) = state(m) {
        parts.push(state);
    }
    if let Some(h) = m.holder.filter(|h| h.state == "alive") {
        parts.push(format!("held by {}", h.pid));
    }
    if let Some(h) = m.holder.filter(|h| h.state != "alive") {
        parts.push(format!("holder {}", process(&h)));
    }
    // A condvar's waiters are its state already.
    if let Some(n) = m.waiters.filter(|&n| n > 0 && m.condvar.is_none()) {
        parts.push(format!("{n} waiting"));
    }
    if let Some(p) = &m.poison {
        parts.push(format!("POISONED by {}", p.by.pid));
    }
    if s.key == shmsem::Key::PRIVATE.to_string() {
        parts.push("private key".into());
    } else if m.semid.is_none() {
        parts.push("NO semaphore set".into());
    } else if !m.paired {
        parts.push("semaphore set MISMATCH".into());
    }
    parts.join(", ")
}
