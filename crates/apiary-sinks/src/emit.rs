//! The pipeline's [`Emitter`] as the producers' [`apiary_event::Emit`], so listeners, the
//! sensor and the Core hand events over without knowing this crate.

use apiary_event::{Emit, Event};

use crate::Emitter;

impl Emit for Emitter {
    fn emit(&self, event: Event) {
        Emitter::emit(self, event);
    }
}
