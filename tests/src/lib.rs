//! Helpers shared by amp's end-to-end tests.
