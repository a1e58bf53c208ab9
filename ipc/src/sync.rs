//! TODO(sync)
