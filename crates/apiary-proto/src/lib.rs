//! HoneyBee protocol v2: the only place apiary defines its node wire types.
//!
//! The Core (`apiary-core`) and the node agent (`apiary-node`) both speak through this crate:
//! [`frame`] cuts a byte stream into messages, [`wire`] decodes and encodes the version-2
//! envelope with every interop rule of `docs/protocol.md`, [`totp`] checks enrollment codes
//! (RFC 6238) and [`convert`] turns what nodes report into [`apiary_event::Event`]s.
//! Nothing here does I/O, and nothing here panics on hostile bytes.

pub mod convert;
pub mod frame;
pub mod totp;
pub mod wire;

pub use frame::{Frame, FrameDecoder, FrameError, MAX_MESSAGE};
pub use totp::{TotpError, TotpSecret};
pub use wire::{
    ApiaryAck, ApiarySync, CoreMessage, DecodeError, Inbound, InstallPot, NodeCommand,
    NodeCommandType, NodeEvent, NodeEventKind, NodeMessage, NodeRegistration, NodeStatus,
    NodeStatusUpdate, NodeType, PROTOCOL_VERSION, PotEvent, PotStatus, PotStatusUpdate,
    RegistrationAck, UnitStyle, WireTime,
};
