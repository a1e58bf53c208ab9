//! Worker runtime helpers and the example workers used by amp's demo, tests and benchmarks.
#![forbid(unsafe_code)]
