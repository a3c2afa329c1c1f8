//! Normalized tracking events: the versioned contract downstream consumers read.
