//! Environment and flag configuration (being built).
