//! Ranks as threads of one process ([`Local::group`]): every collective is a rendezvous where
//! each rank leaves its contribution and all take the result, computed once, in rank order,
//! so that every rank gets the same bits. For tests of data parallelism without a launcher.

use super::Collective;
use std::sync::{Arc, Condvar, Mutex};

/// One rendezvous: the contributions so far, and the answer once all have come.
#[derive(Default)]
struct Round {
    generation: u64,
    arrived: usize,
    contributions: Vec<Option<Vec<u8>>>,
    answer: Option<Arc<Vec<Vec<u8>>>>,
    /// Ranks that took the answer of the current round.
    taken: usize,
}

struct Shared {
    size: usize,
    round: Mutex<Round>,
    moved: Condvar,
}

/// One rank of an in-process group.
pub struct Local {
    rank: usize,
    shared: Arc<Shared>,
}

impl Local {
    /// `size` ranks that talk to each other; give each to its own thread.
    pub fn group(size: usize) -> Vec<Arc<dyn Collective>> {
        let shared = Arc::new(Shared {
            size,
            round: Mutex::new(Round {
                contributions: vec![None; size],
                ..Round::default()
            }),
            moved: Condvar::new(),
        });
        (0..size)
            .map(|rank| {
                Arc::new(Local {
                    rank,
                    shared: shared.clone(),
                }) as Arc<dyn Collective>
            })
            .collect()
    }

    /// Leaves `message` and returns every rank's, in rank order.
    fn exchange(&self, message: Vec<u8>) -> Arc<Vec<Vec<u8>>> {
        let s = &self.shared;
        let mut round = s.round.lock().unwrap_or_else(|p| p.into_inner());
        // Wait until the previous round's answer has been taken by everyone.
        while round.answer.is_some() {
            round = s.moved.wait(round).unwrap_or_else(|p| p.into_inner());
        }
        let generation = round.generation;
        round.contributions[self.rank] = Some(message);
        round.arrived += 1;
        if round.arrived == s.size {
            let all: Vec<Vec<u8>> = round
                .contributions
                .iter_mut()
                .map(|c| c.take().expect("every rank contributed"))
                .collect();
            round.answer = Some(Arc::new(all));
            round.arrived = 0;
            s.moved.notify_all();
        }
        while round.generation == generation && round.answer.is_none() {
            round = s.moved.wait(round).unwrap_or_else(|p| p.into_inner());
        }
        let answer = round.answer.clone().expect("the round is answered");
        round.taken += 1;
        if round.taken == s.size {
            round.answer = None;
            round.taken = 0;
            round.generation += 1;
            s.moved.notify_all();
        }
        answer
    }
}

impl Collective for Local {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn local_rank(&self) -> usize {
        self.rank
    }
    fn sum_f64(&self, values: &mut [f64]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.exchange(bytes);
        for (i, v) in values.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|m| f64::from_le_bytes(m[8 * i..8 * i + 8].try_into().expect("8 bytes")))
                .fold(0.0, |a, b| a + b);
        }
    }
    fn sum_f32(&self, values: &mut [f32]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.exchange(bytes);
        for (i, v) in values.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|m| f32::from_le_bytes(m[4 * i..4 * i + 4].try_into().expect("4 bytes")))
                .fold(0.0, |a, b| a + b);
        }
    }
    fn gather_all(&self, message: &[u8]) -> Vec<Vec<u8>> {
        self.exchange(message.to_vec()).as_ref().clone()
    }
    fn describe(&self) -> String {
        format!("{} in-process ranks", self.shared.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_gathers_agree_on_every_rank_over_many_rounds() {
        let ranks = Local::group(3);
        let out: Vec<Vec<f64>> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .map(|c| {
                    let c = c.clone();
                    s.spawn(move || {
                        let mut seen = Vec::new();
                        for round in 0..50 {
                            let mut v = vec![c.rank() as f64 + round as f64, 1.0];
                            c.sum_f64(&mut v);
                            seen.extend(v);
                            let all = c.gather_all(&[c.rank() as u8]);
                            assert_eq!(all, vec![vec![0], vec![1], vec![2]]);
                            let mut f = [0.5f32 * c.rank() as f32];
                            c.sum_f32(&mut f);
                            assert_eq!(f[0], 1.5);
                        }
                        seen
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(out[0], out[1]);
        assert_eq!(out[1], out[2]);
        assert_eq!(&out[0][..2], &[3.0, 3.0]);
        assert_eq!(&out[0][98..], &[3.0 + 3.0 * 49.0, 3.0]);
    }
}
