//! Zero-copy views of the headers the data path reads and edits.
