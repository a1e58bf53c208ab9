//! TODO(signal)
