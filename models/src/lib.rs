//! Kairos's models (being written).
