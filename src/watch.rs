//! Watching the project: ignore rules, debounce, and classification of a batch of changes.
