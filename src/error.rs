//! The core's one error type.
//!
//! Every fallible operation of the core (parsing shards, assembling a model, decoding a session,
//! naming an event type) returns [`Error`]. It wraps a public, `#[non_exhaustive]` [`ErrorKind`] so
//! variants can be added without breaking callers, and its `Display` is a sentence fit to show a
//! user as is (the JS API turns it into the message of the thrown `Error`).

use crate::format::MIN_VERSION;
use core::fmt;

/// What went wrong; see [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Fewer bytes than the structure needs.
    Truncated {
        what: &'static str,
        need: u64,
        got: u64,
    },
    /// The first 8 bytes are not the shard magic.
    BadMagic,
    /// The endianness marker reads byte-swapped: written on a big-endian machine.
    WrongEndianness,
    /// A format version this build cannot read.
    UnsupportedVersion { found: u16, supported: u16 },
    /// The length in the header differs from the number of bytes given.
    LengthMismatch { header: u64, actual: u64 },
    /// The checksum in the header does not match the bytes.
    ChecksumMismatch { expected: u64, actual: u64 },
    /// A section table entry is malformed (out of bounds, misaligned, overlapping, a gap,
    /// duplicated or unknown).
    BadSectionTable { detail: String },
    /// A required section is absent.
    MissingSection { kind: &'static str },
    /// A section's byte length does not match what the header implies.
    BadSectionLength {
        kind: &'static str,
        expected: u64,
        got: u64,
    },
    /// A value inside a section is invalid (non-finite float, index out of range, bad UTF-8 ...).
    InvalidValue { detail: String },
    /// The given shards do not form one complete model.
    BadShardSet { detail: String },
    /// A session token's bytes are malformed or too large.
    BadSession { detail: String },
    /// An event type name that is not one of `view|click|like|cart|purchase|dwell`.
    UnknownEventType { name: String },
    /// A device class name that is not one of `mobile|desktop|tablet|tv|bot|other`.
    UnknownDevice { name: String },
    /// An invalid argument to a builder or writer.
    InvalidArgument { detail: String },
    /// An error in the shard at this position of the list given to `Engine::from_bytes`.
    InShard {
        position: usize,
        error: Box<ErrorKind>,
    },
}

/// The core's error: an [`ErrorKind`] with a readable `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }

    /// The kind of failure, for callers that branch on it.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub(crate) fn section_table(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::BadSectionTable {
            detail: detail.into(),
        })
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidValue {
            detail: detail.into(),
        })
    }

    pub(crate) fn shard_set(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::BadShardSet {
            detail: detail.into(),
        })
    }

    pub(crate) fn session(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::BadSession {
            detail: detail.into(),
        })
    }

    pub(crate) fn argument(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument {
            detail: detail.into(),
        })
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::new(kind)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match &self.kind {
            Truncated { what, need, got } => {
                write!(f, "{what} is truncated: need {need} bytes, got {got}")
            }
            BadMagic => write!(f, "not an edgerec shard (bad magic bytes)"),
            WrongEndianness => write!(f, "shard was written with the wrong byte order"),
            UnsupportedVersion { found, supported } => write!(
                f,
                "shard format version {found} is not supported (this build reads versions {MIN_VERSION} to {supported})"
            ),
            LengthMismatch { header, actual } => write!(
                f,
                "shard length mismatch: header says {header} bytes, got {actual} (partial or padded upload?)"
            ),
            ChecksumMismatch { expected, actual } => write!(
                f,
                "shard checksum mismatch: header {expected:016x}, computed {actual:016x} (corrupt shard)"
            ),
            BadSectionTable { detail } => write!(f, "bad section table: {detail}"),
            MissingSection { kind } => write!(f, "required section `{kind}` is missing"),
            BadSectionLength { kind, expected, got } => write!(
                f,
                "section `{kind}` has {got} bytes, expected {expected}"
            ),
            InvalidValue { detail } => write!(f, "invalid shard contents: {detail}"),
            BadShardSet { detail } => write!(f, "shards do not form one model: {detail}"),
            BadSession { detail } => write!(f, "bad session bytes: {detail}"),
            UnknownEventType { name } => write!(
                f,
                "unknown event type {name:?} (expected view, click, like, cart, purchase or dwell)"
            ),
            UnknownDevice { name } => write!(
                f,
                "unknown device {name:?} (expected mobile, desktop, tablet, tv, bot or other)"
            ),
            InvalidArgument { detail } => write!(f, "invalid argument: {detail}"),
            InShard { position, error } => {
                write!(f, "shard {position}: {}", Error::new((**error).clone()))
            }
        }
    }
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
