//! The held-out split of a user's data set: `--holdout N` keeps the N images whose names hash
//! lowest (xxh3-64 of the name, seeded with `--holdout-seed`) out of training, so that `eval`
//! measures the generator on images it never saw. The split depends only on the names, the
//! seed and N: not on the order files were found in, and not on other files being added
//! (an image stays held out unless one with a lower hash arrives).

use anyhow::{bail, Result};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The positions (ascending) of the `holdout` images of `names` held out, and of the others.
pub fn split(names: &[String], holdout: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if holdout == 0 {
        return Ok((Vec::new(), (0..names.len()).collect()));
    }
    if holdout >= names.len() {
        bail!(
            "--holdout {holdout} leaves no training images: the data set has {} (hold out fewer)",
            names.len()
        );
    }
    let mut ranked: Vec<(u64, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (xxh3_64_with_seed(n.as_bytes(), seed), i))
        .collect();
    ranked.select_nth_unstable(holdout - 1);
    let mut held: Vec<usize> = ranked[..holdout].iter().map(|&(_, i)| i).collect();
    held.sort_unstable();
    let mut is_held = vec![false; names.len()];
    for &i in &held {
        is_held[i] = true;
    }
    let training = (0..names.len()).filter(|&i| !is_held[i]).collect();
    Ok((held, training))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("img/{i:05}.jpg")).collect()
    }

    #[test]
    fn the_split_is_a_function_of_names_seed_and_count() {
        let a = names(1000);
        let (held, train) = split(&a, 50, 0).unwrap();
        assert_eq!((held.len(), train.len()), (50, 950));
        let mut all: Vec<usize> = held.iter().chain(&train).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        // Spread over the set, not the first 50.
        assert!(held.iter().any(|&i| i > 500) && held.iter().any(|&i| i < 500));
        // Same names in another order: the same images held out.
        let mut shuffled = a.clone();
        shuffled.reverse();
        let (held_r, _) = split(&shuffled, 50, 0).unwrap();
        let mut by_name: Vec<&String> = held_r.iter().map(|&i| &shuffled[i]).collect();
        by_name.sort();
        let mut want: Vec<&String> = held.iter().map(|&i| &a[i]).collect();
        want.sort();
        assert_eq!(by_name, want);
        // Another seed, another split; adding files keeps most of the held-out images.
        assert_ne!(split(&a, 50, 1).unwrap().0, held);
        let more = names(1010);
        let (held_more, _) = split(&more, 50, 0).unwrap();
        let kept = held_more.iter().filter(|i| held.contains(i)).count();
        assert!(kept >= 45, "{kept}");
        assert!(split(&a, 1000, 0)
            .unwrap_err()
            .to_string()
            .contains("no training images"));
        assert_eq!(split(&a, 0, 0).unwrap().1.len(), 1000);
    }
}
