//! Fixtures for the data modules' unit tests: the workspace's file fixtures (IDX, gzip, PNG
//! bombs: `wgan_test_support::fixtures`) and small in-memory data sets.

pub use wgan_test_support::fixtures::{bomb_png, gzip, idx_images, idx_labels, write};

/// A small in-memory data set whose image `i` is filled with the byte `i` (value
/// `i / 127.5 − 1`); `len` at most 256.
pub fn numbered(len: usize, channels: usize, size: usize) -> super::Dataset {
    assert!(len <= 256);
    let n = channels * size * size;
    let bytes: Vec<u8> = (0..len)
        .flat_map(|i| std::iter::repeat_n(i as u8, n))
        .collect();
    super::Dataset::new(
        super::Store::Memory(bytes),
        super::Info {
            count: len,
            channels,
            size,
            description: format!("{len} numbered images"),
            skipped: 0,
            labels: None,
            fingerprint: super::Fingerprint(len as u128),
        },
    )
}

/// The image number `numbered` filled a sample with.
pub fn number_of(v: f32) -> usize {
    ((v + 1.0) * 127.5).round() as usize
}
