//! Data parallelism across processes and machines: the ranks of an MPI job (feature `mpi`,
//! rsmpi over the system's MPI library), or one process.
//!
//! Every rank holds the whole model and optimizer. A step's global batch (the epoch's seeded
//! order cut into `--batch` samples, the same for any number of ranks) is cut into one
//! contiguous shard per rank ([`World::shard`]); each rank computes the gradient of its shard's
//! mean loss, and [`World::reduce_grads`] turns those into the gradient of the global batch's
//! mean loss on every rank with two `MPI_Allreduce` calls: a few f64 (loss, sample count,
//! non-finite flag, which parameters have gradients) and one flat f32 buffer of every gradient.
//! Every rank then applies the same AdamW/EMA update to the same values, so the parameters stay
//! bit-identical across ranks ([`World::check_identical`] compares checksums each epoch). Rank 0
//! alone writes checkpoints, metrics, plots and progress.
//!
//! No collective-communication code of our own: MPI does the reductions (on one machine through
//! shared memory, between machines over its network transports).

use std::cell::Cell;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::weights::{visit_keyed, KeyedParam};

/// The processes of a run: an MPI job's ranks, or this process alone.
pub struct World {
    #[cfg(feature = "mpi")]
    mpi: Option<Mpi>,
    rank: usize,
    size: usize,
    /// Ranks on this machine (the launcher's count; 1 when it gives none).
    local_size: usize,
    /// Time in all-reduce calls and f32 values reduced, for the communication report.
    reduce_secs: Cell<f64>,
    reduce_values: Cell<u64>,
    reduce_calls: Cell<u64>,
}

#[cfg(feature = "mpi")]
struct Mpi {
    world: mpi::topology::SimpleCommunicator,
    // Finalizes MPI when dropped: declared last, dropped after `world`.
    _universe: mpi::environment::Universe,
}

/// The number of processes a launcher (mpirun/mpiexec of Open MPI, MPICH or a PMIx one) says
/// this job has, if any.
fn launcher_size() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

impl World {
    /// This process alone.
    pub fn single() -> World {
        World {
            #[cfg(feature = "mpi")]
            mpi: None,
            rank: 0,
            size: 1,
            local_size: 1,
            reduce_secs: Cell::new(0.0),
            reduce_values: Cell::new(0),
            reduce_calls: Cell::new(0),
        }
    }

    /// The MPI job this process was launched in (`mpirun -np N train …`), or [`World::single`]
    /// when no launcher started it. Errors: launched with N > 1 ranks by a build without the
    /// `mpi` feature (N independent runs would overwrite each other's output), or MPI failing
    /// to start.
    pub fn from_env() -> Result<World, String> {
        let launched = launcher_size();
        #[cfg(feature = "mpi")]
        if launched.is_some() {
            use mpi::traits::Communicator;
            // Only the main thread calls MPI (the step's worker threads never do).
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or("MPI could not be initialized (MPI_Init_thread failed)")?;
            let world = universe.world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            return Ok(World {
                mpi: Some(Mpi {
                    world,
                    _universe: universe,
                }),
                rank,
                size,
                local_size: [
                    "OMPI_COMM_WORLD_LOCAL_SIZE",
                    "MPI_LOCALNRANKS",
                    "PMI_LOCAL_SIZE",
                ]
                .iter()
                .find_map(|k| std::env::var(k).ok()?.parse().ok())
                .unwrap_or(1usize)
                .max(1),
                ..World::single()
            });
        }
        match launched {
            Some(n) if n > 1 && !cfg!(feature = "mpi") => Err(format!(
                "launched by an MPI launcher with {n} processes, but this train was built without MPI: \
                 build it with `cargo build --release -p train --features mpi` (needs libopenmpi-dev and libclang-dev)"
            )),
            _ => Ok(World::single()),
        }
    }

    /// This process's rank, `0..size()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Rank 0: the one that writes checkpoints, metrics, plots and progress.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// `result`, except that an error on one rank of several ends the whole job: the error is
    /// printed with the rank and `MPI_Abort` stops every rank (the others would otherwise wait
    /// in their next reduction forever). The last checkpoint stays intact (writes are atomic).
    pub fn or_abort<T>(&self, result: Result<T, String>) -> Result<T, String> {
        #[cfg(feature = "mpi")]
        if let (Err(e), Some(m)) = (&result, &self.mpi) {
            use mpi::traits::Communicator;
            eprintln!(
                "error on rank {} of {}: {e}; stopping every rank",
                self.rank, self.size
            );
            m.world.abort(1);
        }
        result
    }

    /// Slices (threads) per step on this rank: the device's `parts` shared among the ranks on
    /// this machine (so `mpirun -np 2` on two cores runs one slice per rank).
    pub fn parts(&self, parts: usize) -> usize {
        (parts / self.local_size).max(1)
    }

    /// This rank's part of `n` items: the `rank`-th of `size` contiguous, nearly equal ranges
    /// (possibly empty when `n < size`).
    pub fn shard(&self, n: usize) -> std::ops::Range<usize> {
        (self.rank * n / self.size)..((self.rank + 1) * n / self.size)
    }

    /// Element-wise sum of `v` over all ranks, in place (`MPI_Allreduce`, `MPI_SUM`).
    pub fn sum_f64(&self, v: &mut [f64]) {
        self.reduce(v);
    }

    /// Element-wise sum of `v` over all ranks, in place.
    pub fn sum_f32(&self, v: &mut [f32]) {
        self.reduce(v);
    }

    #[allow(unused_variables)]
    fn reduce<T: Copy + Default + ReduceValue>(&self, v: &mut [T]) {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            use mpi::collective::{CommunicatorCollectives, SystemOperation};
            let t0 = std::time::Instant::now();
            let send = v.to_vec();
            m.world
                .all_reduce_into(&send[..], v, SystemOperation::sum());
            self.reduce_secs
                .set(self.reduce_secs.get() + t0.elapsed().as_secs_f64());
            self.reduce_values
                .set(self.reduce_values.get() + v.len() as u64);
            self.reduce_calls.set(self.reduce_calls.get() + 1);
        }
    }

    /// Every rank's `value`, in rank order.
    pub fn gather_u64(&self, value: u64) -> Vec<u64> {
        #[cfg(feature = "mpi")]
        if let Some(m) = &self.mpi {
            use mpi::collective::CommunicatorCollectives;
            let mut all = vec![0u64; self.size];
            m.world.all_gather_into(&value, &mut all[..]);
            return all;
        }
        vec![value]
    }

    /// The gradient of the global batch's mean loss on every rank, from this rank's gradient of
    /// its shard's mean loss `loss` over `n` samples (`grads`: `None` when the loss is not
    /// finite or the shard is empty). Returns the global mean loss, the global sample count and
    /// the gradients (`None` when the global loss is not finite: no rank updates then).
    /// A parameter gets a gradient when any rank has one for it; ranks without one add zeros.
    pub fn reduce_grads<M: Module>(
        &self,
        model: &M,
        loss: f64,
        n: usize,
        grads: Option<GradientsParams>,
    ) -> (f64, usize, Option<GradientsParams>) {
        if self.size == 1 {
            return (loss, n, grads);
        }
        let finite = loss.is_finite() || n == 0;
        let mut grads = grads.unwrap_or_default();
        // Pass 1: this rank's gradients into one flat buffer, in module order.
        let mut flat = Flatten {
            grads: &mut grads,
            values: Vec::new(),
            present: Vec::new(),
        };
        visit_keyed(model, &mut flat);
        let Flatten {
            mut values,
            present,
            ..
        } = flat;
        let mut head = vec![
            if n > 0 && finite {
                loss * n as f64
            } else {
                0.0
            },
            n as f64,
            if finite { 0.0 } else { 1.0 },
        ];
        head.extend(present.iter().map(|&p| p as u8 as f64));
        self.sum_f64(&mut head);
        let total = head[1] as usize;
        if head[2] > 0.0 || total == 0 {
            return (f64::NAN, total, None);
        }
        let global_loss = head[0] / total as f64;
        // Shard mean → this rank's share of the global mean.
        let w = n as f32 / total as f32;
        for v in values.iter_mut() {
            *v *= w;
        }
        self.sum_f32(&mut values);
        // Pass 2: the sums back into gradients, for every parameter some rank had.
        let mut out = Unflatten {
            values: &values,
            at: 0,
            present: head[3..].iter().map(|&c| c > 0.0).collect(),
            index: 0,
            out: GradientsParams::new(),
        };
        visit_keyed(model, &mut out);
        (global_loss, total, Some(out.out))
    }

    /// Errors when the parameters of `model` differ between ranks (checksums of their bits,
    /// gathered from every rank); `what` names the moment (e.g. "after epoch 3").
    pub fn check_identical<M: Module>(&self, model: &M, what: &str) -> Result<u64, String> {
        let mine = checksum(model);
        let all = self.gather_u64(mine);
        if all.iter().any(|&c| c != mine) {
            return Err(format!(
                "parameters differ between ranks {what}: checksums {}",
                all.iter()
                    .map(|c| format!("{c:016x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(mine)
    }

    /// One line on the all-reduce traffic so far (rank 0 prints it at the end of a run), or
    /// `None` with one process.
    pub fn communication_report(&self, steps: u64) -> Option<String> {
        if self.size == 1 || steps == 0 {
            return None;
        }
        let (secs, values, calls) = (
            self.reduce_secs.get(),
            self.reduce_values.get(),
            self.reduce_calls.get(),
        );
        Some(format!(
            "MPI: {} ranks, {steps} steps: {:.2} MB all-reduced per step ({} calls), {:.1} ms per step in all-reduce (rank {}'s wait included)",
            self.size,
            values as f64 * 4.0 / steps as f64 / 1e6,
            calls / steps,
            1e3 * secs / steps as f64,
            self.rank
        ))
    }
}

/// Values the reduction sums (the MPI datatypes behind them).
#[cfg(feature = "mpi")]
pub trait ReduceValue: mpi::datatype::Equivalence {}
#[cfg(feature = "mpi")]
impl<T: mpi::datatype::Equivalence> ReduceValue for T {}
/// Values the reduction sums.
#[cfg(not(feature = "mpi"))]
pub trait ReduceValue {}
#[cfg(not(feature = "mpi"))]
impl<T> ReduceValue for T {}

/// FNV-1a over the bits of every parameter, in module order.
pub fn checksum<M: Module>(model: &M) -> u64 {
    struct Hash(u64);
    impl KeyedParam for Hash {
        fn param<const D: usize>(&mut self, _: String, param: &Param<Tensor<D>>) {
            let v = param
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 parameters");
            for x in v {
                for b in x.to_bits().to_le_bytes() {
                    self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
    }
    let mut h = Hash(0xcbf2_9ce4_8422_2325);
    visit_keyed(model, &mut h);
    h.0
}

struct Flatten<'g> {
    grads: &'g mut GradientsParams,
    values: Vec<f32>,
    present: Vec<bool>,
}

impl KeyedParam for Flatten<'_> {
    fn param<const D: usize>(&mut self, _: String, param: &Param<Tensor<D>>) {
        let numel: usize = param.val().dims().iter().product();
        match self.grads.remove::<D>(param.id) {
            Some(g) => {
                let v = g
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32 gradients");
                debug_assert_eq!(v.len(), numel);
                self.values.extend(v);
                self.present.push(true);
            }
            None => {
                self.values.resize(self.values.len() + numel, 0.0);
                self.present.push(false);
            }
        }
    }
}

struct Unflatten<'v> {
    values: &'v [f32],
    at: usize,
    present: Vec<bool>,
    index: usize,
    out: GradientsParams,
}

impl KeyedParam for Unflatten<'_> {
    fn param<const D: usize>(&mut self, _: String, param: &Param<Tensor<D>>) {
        let val = param.val();
        let dims = val.dims();
        let numel: usize = dims.iter().product();
        let part = &self.values[self.at..self.at + numel];
        self.at += numel;
        let had = self.present[self.index];
        self.index += 1;
        if had {
            // Gradients live on the parameter's device without autodiff.
            let device = if val.is_autodiff() {
                val.inner().device()
            } else {
                val.device()
            };
            let g = Tensor::<D>::from_data(TensorData::new(part.to_vec(), dims), &device);
            self.out.register(param.id, g);
        }
    }
}
