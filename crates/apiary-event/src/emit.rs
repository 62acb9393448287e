//! The producer side of the pipeline as a trait, so listeners, the sensor and the Core can emit
//! events without depending on the crate that holds every sink client.

use std::sync::{Arc, Mutex};

use crate::Event;

/// Something that takes events without blocking: the logger pipeline, or a test collector.
pub trait Emit: Send + Sync + 'static {
    /// Hands over one event. Must not block or await: a producer calls it on its hot path.
    fn emit(&self, event: Event);
}

/// A shared emitter, as producers hold it.
pub type SharedEmit = Arc<dyn Emit>;

/// Collects events in memory (tests and tools).
#[derive(Debug, Default)]
pub struct Collector {
    events: Mutex<Vec<Event>>,
}

impl Collector {
    /// A new empty collector behind an `Arc`, ready to be used as a [`SharedEmit`].
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes every event collected so far.
    pub fn take(&self) -> Vec<Event> {
        self.events.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// A copy of every event collected so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Emit for Collector {
    fn emit(&self, event: Event) {
        if let Ok(mut v) = self.events.lock() {
            v.push(event);
        }
    }
}

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Emit for Discard {
    fn emit(&self, _event: Event) {}
}
