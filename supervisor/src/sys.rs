//! TODO(sys)
#![allow(unsafe_code, reason = "the syscall shell: fork/exec hooks, prctl, rlimits")]
