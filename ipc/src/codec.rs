//! Typed payloads: a small codec trait so the serialisation format can be swapped.
//!
//! The default is [`Bincode`] (bincode 2.x with serde, standard config). bincode is marked
//! unmaintained (RUSTSEC-2025-0141), hence the trait: everything in amp that encodes payloads
//! goes through [`Codec`].
//!
//! ```
//! use amp_ipc::codec::{Bincode, Codec};
//! let bytes = Bincode::encode(&(1u32, "two".to_string()))?;
//! let back: (u32, String) = Bincode::decode(&bytes)?;
//! assert_eq!(back, (1, "two".into()));
//! # Ok::<(), amp_ipc::codec::CodecError>(())
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the requested type.
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// A serialisation format for task payloads and results.
pub trait Codec {
    /// Encodes a value.
    ///
    /// # Errors
    /// [`CodecError::Encode`].
    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError>;
    /// Decodes a value, refusing trailing bytes.
    ///
    /// # Errors
    /// [`CodecError::Decode`].
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// bincode 2.x, standard configuration (varint integers, little-endian).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl Codec for Bincode {
    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| CodecError::Encode(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let (v, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| CodecError::Decode(e.to_string()))?;
        if used != bytes.len() {
            return Err(CodecError::Decode(format!(
                "{} trailing bytes",
                bytes.len() - used
            )));
        }
        Ok(v)
    }
}
