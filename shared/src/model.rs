//! STUB — to be implemented.
