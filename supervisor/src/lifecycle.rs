//! TODO(lifecycle)
