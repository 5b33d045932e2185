//! Generator output as images: the PNG grids and files of [`wgan_models::images`] (re-exported
//! here), and looping animated GIFs ([`GifWriter`]) for latent walks.

use anyhow::{bail, Result};
use std::path::Path;

pub use wgan_models::images::*;

/// The shortest and longest time a GIF frame shows, in milliseconds (browsers show frames
/// shorter than 20 ms for 100 ms; the format counts hundredths of a second in 16 bits).
pub const GIF_FRAME_MS: std::ops::RangeInclusive<u32> = 20..=655_350;

/// The time a GIF frame of `frame_ms` shows: the format counts hundredths of a second, so
/// `frame_ms` rounded to the nearest 10 ms.
pub fn gif_frame_ms(frame_ms: u32) -> u32 {
    (frame_ms + 5) / 10 * 10
}

/// An animated GIF written frame by frame under the output policy (a temporary file put in
/// place by [`GifWriter::finish`]), looping forever. Grey images keep their 256 levels exactly;
/// colour frames keep their colours when they have at most 256, and are quantised (NeuQuant)
/// otherwise.
pub struct GifWriter {
    encoder: gif::Encoder<std::io::BufWriter<crate::output::OutputFile>>,
    channels: usize,
    height: u16,
    width: u16,
    /// Hundredths of a second per frame.
    delay: u16,
    path: std::path::PathBuf,
}

impl GifWriter {
    /// Starts `path` for images of `[channels, height, width]` (1 or 3 channels), each shown
    /// for `frame_ms` milliseconds (rounded to the format's 10 ms, within [`GIF_FRAME_MS`]).
    pub fn create(
        path: &Path,
        [channels, height, width]: [usize; 3],
        frame_ms: u32,
    ) -> Result<GifWriter> {
        if !GIF_FRAME_MS.contains(&frame_ms) {
            bail!(
                "a GIF frame shows for {} to {} ms, not {frame_ms}",
                GIF_FRAME_MS.start(),
                GIF_FRAME_MS.end()
            );
        }
        if channels != 1 && channels != 3 {
            bail!("a GIF holds grey or RGB images, not {channels} channels");
        }
        let (Ok(h), Ok(w)) = (u16::try_from(height), u16::try_from(width)) else {
            bail!("a GIF frame is at most 65535 pixels a side, not {height}×{width}");
        };
        let out = std::io::BufWriter::new(crate::output::OutputFile::create(path)?);
        let grey: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
        let palette: &[u8] = if channels == 1 { &grey } else { &[] };
        let fail = |e: gif::EncodingError| anyhow::anyhow!("cannot write {}: {e}", path.display());
        let mut encoder = gif::Encoder::new(out, w, h, palette).map_err(fail)?;
        encoder.set_repeat(gif::Repeat::Infinite).map_err(fail)?;
        Ok(GifWriter {
            encoder,
            channels,
            height: h,
            width: w,
            delay: (gif_frame_ms(frame_ms) / 10) as u16,
            path: path.to_path_buf(),
        })
    }

    /// Appends one image, `[C, H, W]` values in [-1, 1].
    pub fn push(&mut self, chw: &[f32]) -> Result<()> {
        let (h, w) = (self.height, self.width);
        let plane = h as usize * w as usize;
        if chw.len() != self.channels * plane {
            bail!(
                "image buffer has {} values, expected {}×{h}×{w}",
                chw.len(),
                self.channels
            );
        }
        let mut frame = if self.channels == 1 {
            let levels: Vec<u8> = chw.iter().map(|&v| to_u8(v)).collect();
            gif::Frame::from_indexed_pixels(w, h, levels, None)
        } else {
            let mut rgb = Vec::with_capacity(3 * plane);
            for p in 0..plane {
                rgb.extend((0..3).map(|c| to_u8(chw[c * plane + p])));
            }
            gif::Frame::from_rgb_speed(w, h, &rgb, 10)
        };
        frame.delay = self.delay;
        self.encoder
            .write_frame(&frame)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }

    /// Ends the file and puts it in place.
    pub fn finish(self) -> Result<()> {
        let path = self.path;
        let out = self
            .encoder
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        out.into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error()))?
            .commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgan_test_support::fixtures::decode_gif;

    #[test]
    fn gifs_hold_the_exact_pixels_loop_and_keep_their_timing() {
        let dir = tempfile::tempdir().unwrap();
        for channels in [1, 3] {
            let (h, w) = (5, 7);
            let path = dir.path().join(format!("walk{channels}.gif"));
            let mut g = GifWriter::create(&path, [channels, h, w], 120).unwrap();
            let images: Vec<Vec<f32>> = (0..3)
                .map(|k| {
                    (0..channels * h * w)
                        .map(|i| ((i * 37 + k * 11) % 255) as f32 / 127.0 - 1.0)
                        .collect()
                })
                .collect();
            for im in &images {
                g.push(im).unwrap();
            }
            assert!(!path.exists(), "written only when finished");
            g.finish().unwrap();
            let gif = decode_gif(&path);
            assert_eq!(gif.repeat, gif::Repeat::Infinite);
            assert_eq!(gif.frames.len(), 3);
            for (im, frame) in images.iter().zip(&gif.frames) {
                assert_eq!(frame.delay, 12);
                let want = to_image(im, channels, h, w).unwrap().to_rgba8().into_raw();
                assert_eq!(frame.rgba, want, "{channels} channels");
            }
        }
        assert!(GifWriter::create(&dir.path().join("x.gif"), [1, 4, 4], 10).is_err());
        assert!(GifWriter::create(&dir.path().join("x.gif"), [2, 4, 4], 100).is_err());
        // Dropped unfinished: nothing is left behind.
        let mut g = GifWriter::create(&dir.path().join("y.gif"), [1, 4, 4], 100).unwrap();
        g.push(&[0.0; 16]).unwrap();
        drop(g);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
