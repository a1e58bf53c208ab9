//! TODO(ring)
