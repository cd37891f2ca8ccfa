//! The edge worker (issue 6): not built yet.
