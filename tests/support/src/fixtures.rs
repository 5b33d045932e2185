//! Data files written in code (MNIST IDX files, gzip, PNG decompression bombs) and animated
//! GIFs decoded, for the data loaders' and the writers' tests.

use std::io::Write;
use std::path::Path;

/// An IDX images file: `n` images of `rows`×`cols`, pixel `(i, p)` = `pixel(i, p)`.
pub fn idx_images(
    n: usize,
    rows: usize,
    cols: usize,
    pixel: impl Fn(usize, usize) -> u8,
) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for i in 0..n {
        for p in 0..rows * cols {
            v.push(pixel(i, p));
        }
    }
    v
}

/// An IDX labels file with `n` labels (`i mod 10`).
pub fn idx_labels(n: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(n as u32).to_be_bytes());
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes `bytes` to `path`, making its folder.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// A grey PNG of `side`×`side` black pixels: a few hundred KB of file that decodes to
/// `side²` bytes (a decompression bomb for a large side).
pub fn bomb_png(side: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, deflate, no filter, no interlace
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; side as usize + 1]; // filter byte 0, then the pixels
    for _ in 0..side {
        z.write_all(&row).unwrap();
    }
    let idat = z.finish().unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// An animated GIF decoded: its size, each frame (as RGBA, with its size and position) and
/// the repeat setting.
pub struct Gif {
    pub width: u16,
    pub height: u16,
    pub frames: Vec<GifFrame>,
    pub repeat: gif::Repeat,
}

/// One frame of a [`Gif`].
pub struct GifFrame {
    pub rgba: Vec<u8>,
    /// In hundredths of a second.
    pub delay: u16,
    /// `(left, top, width, height)`.
    pub rect: (u16, u16, u16, u16),
}

/// Decodes the GIF at `path` (panics on a broken one).
pub fn decode_gif(path: &Path) -> Gif {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut d = options
        .read_info(std::fs::File::open(path).unwrap())
        .unwrap();
    let mut frames = Vec::new();
    while let Some(f) = d.read_next_frame().unwrap() {
        frames.push(GifFrame {
            rgba: f.buffer.to_vec(),
            delay: f.delay,
            rect: (f.left, f.top, f.width, f.height),
        });
    }
    Gif {
        width: d.width(),
        height: d.height(),
        frames,
        repeat: d.repeat(),
    }
}
