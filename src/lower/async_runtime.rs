//! nnopt's implementation of MLIR's async runtime API (`mlir/ExecutionEngine/AsyncRuntime.h`),
//! which code compiled with `--threads N` calls (`async-parallel-for`, then
//! `convert-async-to-llvm`). The JIT registers these functions under the API's names.
//!
//! Why not MLIR's `libmlir_async_runtime`: its pool parks idle workers on a condition variable,
//! and waking an idle vCPU costs more than a small layer's whole work (`docs/lowering.md`,
//! "Threads"). A network has a fork-join per scheduled
//! layer and three per padded conv. Here workers and waiters spin for a while
//! ([`SPIN`]) before they park, as onnxruntime's pool does, and a waiter runs queued tasks
//! itself instead of idling, so a task never waits for a worker to wake up.
//!
//! The semantics are the reference implementation's: tokens and values are created with two
//! references (the creator's and the task's, dropped on emplace), a group completes when
//! `size` tokens did, awaiters registered before completion run on the completing thread.
//! Tokens, values and groups are one [`Object`] type: each counts the completions it still
//! waits for (1, or the group's size) and the errors among them.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker or a blocked waiter spins (yielding its vCPU to runnable threads)
/// before it parks. Covers the serial code between two parallel loops of a network (an
/// element-wise op, a pool: tens to hundreds of µs) with room to spare.
const SPIN: Duration = Duration::from_millis(2);

/// Step `n` of a spin: about a microsecond of `pause` (which leaves the core's resources to a
/// hyperthread sibling); every 64th step the vCPU goes to any other runnable thread (`--threads`
/// above the core count, other processes), so a spinner never holds up the thread it waits for
/// for long. Yielding on every step is worse: a waiter then gives up its vCPU while the task it
/// waits for is about to finish (`docs/performance.md`).
fn pause(n: &mut u32) {
    for _ in 0..32 {
        std::hint::spin_loop();
    }
    *n = n.wrapping_add(1);
    if n.is_multiple_of(64) {
        std::thread::yield_now();
    }
}

/// A coroutine to resume: what `async.execute` and the `*AndExecute` calls hand over.
#[derive(Clone, Copy)]
struct Task {
    handle: *mut c_void,
    resume: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: a coroutine frame may be resumed on any thread; the compiled code hands it over
// exactly once.
unsafe impl Send for Task {}

impl Task {
    fn run(self) {
        // SAFETY: the compiled code passed a live coroutine handle and its resume function.
        unsafe { (self.resume)(self.handle) }
    }
}

/// What runs when an object completes.
enum Waiter {
    Resume(Task),
    /// A token of this group completed.
    Group(*const Object),
}

// SAFETY: the group pointer is kept alive by the reference `add_token_to_group` took for it.
unsafe impl Send for Waiter {}

/// A token (`pending` starts at 1), a value (1, plus storage) or a group (its size).
struct Object {
    #[cfg(test)]
    owner: u64,
    refs: AtomicI64,
    pending: AtomicI64,
    errors: AtomicI64,
    rank: AtomicI64,
    storage: Vec<u64>,
    state: Mutex<WaitList>,
    wake: Condvar,
}

#[derive(Default)]
struct WaitList {
    waiters: Vec<Waiter>,
    /// Threads parked on `wake`; completion notifies only when there are some.
    parked: usize,
}

impl Object {
    fn new(refs: i64, pending: i64, bytes: usize) -> *mut Object {
        Box::into_raw(Box::new(Object {
            #[cfg(test)]
            owner: tests::created(),
            refs: AtomicI64::new(refs),
            pending: AtomicI64::new(pending),
            errors: AtomicI64::new(0),
            rank: AtomicI64::new(0),
            storage: vec![0; bytes.div_ceil(8)],
            state: Mutex::new(WaitList::default()),
            wake: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, WaitList> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self) -> bool {
        self.pending.load(Ordering::Acquire) <= 0
    }

    /// Records one completion; the last one runs the waiters (outside the lock: nothing is
    /// added once `pending` is zero, and a waiter may complete or free other objects).
    fn complete(&self, error: bool) {
        if error {
            self.errors.fetch_add(1, Ordering::AcqRel);
        }
        let waiters = {
            let mut list = self.lock();
            if self.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
                return;
            }
            if list.parked > 0 {
                self.wake.notify_all();
            }
            std::mem::take(&mut list.waiters)
        };
        for w in waiters {
            match w {
                Waiter::Resume(task) => task.run(),
                Waiter::Group(group) => {
                    // SAFETY: the group is kept alive by the reference taken for this waiter.
                    unsafe {
                        (*group).complete(self.errors.load(Ordering::Acquire) > 0);
                        drop_ref(group as *mut c_void, 1);
                    }
                }
            }
        }
    }

    /// Runs `w` now if the object has completed, else when it does.
    fn on_done(&self, w: Waiter) -> Option<Waiter> {
        let mut list = self.lock();
        if self.done() {
            return Some(w);
        }
        list.waiters.push(w);
        None
    }

    /// Blocks until the object completes: runs queued tasks meanwhile, spins, then parks.
    fn wait(&self) {
        let start = Instant::now();
        let mut spins = 0;
        while !self.done() {
            if let Some(task) = pool().pop() {
                task.run();
            } else if start.elapsed() < SPIN {
                pause(&mut spins);
            } else {
                let mut list = self.lock();
                list.parked += 1;
                while !self.done() {
                    list = self.wake.wait(list).unwrap_or_else(|e| e.into_inner());
                }
                list.parked -= 1;
            }
        }
    }
}

/// The workers and their queue of ready tasks; one per process, grown to the most threads any
/// compiled module asked for.
struct Pool {
    queue: Mutex<Queue>,
    /// Tasks in the queue, read without the lock by spinning threads.
    queued: AtomicUsize,
    ready: Condvar,
    workers: Mutex<usize>,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    parked: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(Queue::default()),
        queued: AtomicUsize::new(0),
        ready: Condvar::new(),
        workers: Mutex::new(0),
    })
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, task: Task) {
        let mut q = self.lock();
        q.tasks.push_back(task);
        self.queued.fetch_add(1, Ordering::Release);
        if q.parked > 0 {
            self.ready.notify_one();
        }
    }

    fn pop(&self) -> Option<Task> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let task = self.lock().tasks.pop_front()?;
        self.queued.fetch_sub(1, Ordering::Release);
        Some(task)
    }

    fn work(&self) {
        let mut idle = Instant::now();
        let mut spins = 0;
        loop {
            if let Some(task) = self.pop() {
                task.run();
                idle = Instant::now();
            } else if idle.elapsed() < SPIN {
                pause(&mut spins);
            } else {
                let mut q = self.lock();
                q.parked += 1;
                while q.tasks.is_empty() {
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q.parked -= 1;
                drop(q);
                idle = Instant::now();
            }
        }
    }
}

/// Makes sure `n` workers run (they live as long as the process). Code compiled for
/// `--threads N` needs N − 1: the calling thread runs one task of each parallel loop itself.
pub fn ensure_workers(n: usize) -> Result<(), String> {
    let p = pool();
    let mut workers = p.workers.lock().unwrap_or_else(|e| e.into_inner());
    while *workers < n {
        std::thread::Builder::new()
            .name(format!("nnopt-worker-{}", *workers))
            .spawn(|| pool().work())
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        *workers += 1;
    }
    Ok(())
}

// The API, in the header's order. Every pointer argument is an object this module created and
// the compiled code still holds a reference to (the async lowering's reference counting).

unsafe extern "C" fn add_ref(p: *mut c_void, count: i64) {
    // SAFETY: see above.
    unsafe {
        (*(p as *const Object))
            .refs
            .fetch_add(count, Ordering::Relaxed)
    };
}

unsafe extern "C" fn drop_ref(p: *mut c_void, count: i64) {
    let o = p as *mut Object;
    // SAFETY: see above; the last reference frees the object, which nothing uses afterwards.
    unsafe {
        if (*o).refs.fetch_sub(count, Ordering::AcqRel) == count {
            #[cfg(test)]
            tests::freed((*o).owner);
            drop(Box::from_raw(o));
        }
    }
}

extern "C" fn create_token() -> *mut c_void {
    Object::new(2, 1, 0).cast()
}

extern "C" fn create_value(bytes: i64) -> *mut c_void {
    Object::new(2, 1, bytes.max(0) as usize).cast()
}

extern "C" fn create_group(size: i64) -> *mut c_void {
    Object::new(1, size, 0).cast()
}

unsafe extern "C" fn add_token_to_group(token: *mut c_void, group: *mut c_void) -> i64 {
    let (t, g) = (token as *const Object, group as *const Object);
    // SAFETY: see above; the waiter holds its own reference to the group.
    unsafe {
        let rank = (*g).rank.fetch_add(1, Ordering::AcqRel);
        add_ref(group, 1);
        if (*t).on_done(Waiter::Group(g)).is_some() {
            (*g).complete((*t).errors.load(Ordering::Acquire) > 0);
            drop_ref(group, 1);
        }
        rank
    }
}

/// Completes a token or value and drops the task's reference.
unsafe fn emplace(p: *mut c_void, error: bool) {
    // SAFETY: see above.
    unsafe {
        (*(p as *const Object)).complete(error);
        drop_ref(p, 1);
    }
}

unsafe extern "C" fn emplace_ok(p: *mut c_void) {
    // SAFETY: see above.
    unsafe { emplace(p, false) }
}

unsafe extern "C" fn emplace_error(p: *mut c_void) {
    // SAFETY: see above.
    unsafe { emplace(p, true) }
}

unsafe extern "C" fn is_error(p: *mut c_void) -> bool {
    // SAFETY: see above.
    unsafe { (*(p as *const Object)).errors.load(Ordering::Acquire) > 0 }
}

unsafe extern "C" fn wait(p: *mut c_void) {
    // SAFETY: see above.
    unsafe { (*(p as *const Object)).wait() }
}

unsafe extern "C" fn value_storage(p: *mut c_void) -> *mut u8 {
    // SAFETY: see above; the storage lives as long as the value.
    unsafe { (*(p as *const Object)).storage.as_ptr() as *mut u8 }
}

extern "C" fn execute(handle: *mut c_void, resume: unsafe extern "C" fn(*mut c_void)) {
    pool().push(Task { handle, resume });
}

unsafe extern "C" fn wait_and_execute(
    p: *mut c_void,
    handle: *mut c_void,
    resume: unsafe extern "C" fn(*mut c_void),
) {
    let task = Task { handle, resume };
    // SAFETY: see above.
    if unsafe { (*(p as *const Object)).on_done(Waiter::Resume(task)) }.is_some() {
        task.run();
    }
}

/// The body of a parallel loop split by `parallel.rs`: runs task `t` of the loop whose
/// arguments `ctx` points to.
type Body = unsafe extern "C" fn(*mut c_void, i64);

/// One task of [`parallel_for`] queued on the pool.
struct ForTask {
    body: Body,
    ctx: *mut c_void,
    t: i64,
    group: *const Object,
}

unsafe extern "C" fn run_for_task(p: *mut c_void) {
    // SAFETY: `p` is a `ForTask` of a `parallel_for` that waits for this task before its
    // tasks go; the fields are copied out before the completion that lets it return.
    let (body, ctx, t, group) = unsafe {
        let task = &*(p as *const ForTask);
        (task.body, task.ctx, task.t, task.group)
    };
    // SAFETY: the compiled code passed its loop body and record; the group holds a reference
    // for this task, dropped here.
    unsafe {
        body(ctx, t);
        (*group).complete(false);
        drop_ref(group as *mut c_void, 1);
    }
}

/// `nnopt_parallel_for(body, ctx, n)`: runs `body(ctx, t)` for `t` in `0..n`, task 0 on the
/// calling thread and the others on the pool, and returns when all have run. What
/// `parallel.rs` compiles a parallel loop to, in place of the async dialect's coroutines:
/// the same pool, queue and waiting (a waiter runs queued tasks itself), without a token, a
/// coroutine frame or reference counting per task.
unsafe extern "C" fn parallel_for(body: Body, ctx: *mut c_void, n: i64) {
    if n <= 1 {
        for t in 0..n {
            // SAFETY: the compiled code's loop body and record.
            unsafe { body(ctx, t) };
        }
        return;
    }
    // One reference for the caller, one per queued task.
    let group = Object::new(n, n - 1, 0);
    let tasks: Vec<ForTask> = (1..n)
        .map(|t| ForTask {
            body,
            ctx,
            t,
            group,
        })
        .collect();
    let p = pool();
    for task in &tasks {
        p.push(Task {
            handle: task as *const ForTask as *mut c_void,
            resume: run_for_task,
        });
    }
    // SAFETY: as above; the group lives until the last reference goes.
    unsafe {
        body(ctx, 0);
        (*group).wait();
        drop_ref(group.cast(), 1);
    }
    drop(tasks);
}

extern "C" fn worker_threads() -> i64 {
    *pool().workers.lock().unwrap_or_else(|e| e.into_inner()) as i64
}

/// The API's functions by name (and `parallel.rs`'s entry), for the loader (`loader.rs`) to define for compiled code.
pub fn symbols() -> [(&'static str, *mut ()); 23] {
    type Ref = unsafe extern "C" fn(*mut c_void, i64);
    type Obj = unsafe extern "C" fn(*mut c_void);
    type Test = unsafe extern "C" fn(*mut c_void) -> bool;
    type Then = unsafe extern "C" fn(*mut c_void, *mut c_void, unsafe extern "C" fn(*mut c_void));
    [
        ("mlirAsyncRuntimeAddRef", add_ref as Ref as *mut ()),
        ("mlirAsyncRuntimeDropRef", drop_ref as Ref as *mut ()),
        (
            "mlirAsyncRuntimeCreateToken",
            create_token as extern "C" fn() -> *mut c_void as *mut (),
        ),
        (
            "mlirAsyncRuntimeCreateValue",
            create_value as extern "C" fn(i64) -> *mut c_void as *mut (),
        ),
        (
            "mlirAsyncRuntimeCreateGroup",
            create_group as extern "C" fn(i64) -> *mut c_void as *mut (),
        ),
        (
            "mlirAsyncRuntimeAddTokenToGroup",
            add_token_to_group as unsafe extern "C" fn(*mut c_void, *mut c_void) -> i64 as *mut (),
        ),
        ("mlirAsyncRuntimeEmplaceToken", emplace_ok as Obj as *mut ()),
        ("mlirAsyncRuntimeEmplaceValue", emplace_ok as Obj as *mut ()),
        (
            "mlirAsyncRuntimeSetTokenError",
            emplace_error as Obj as *mut (),
        ),
        (
            "mlirAsyncRuntimeSetValueError",
            emplace_error as Obj as *mut (),
        ),
        ("mlirAsyncRuntimeIsTokenError", is_error as Test as *mut ()),
        ("mlirAsyncRuntimeIsValueError", is_error as Test as *mut ()),
        ("mlirAsyncRuntimeIsGroupError", is_error as Test as *mut ()),
        ("mlirAsyncRuntimeAwaitToken", wait as Obj as *mut ()),
        ("mlirAsyncRuntimeAwaitValue", wait as Obj as *mut ()),
        ("mlirAsyncRuntimeAwaitAllInGroup", wait as Obj as *mut ()),
        (
            "mlirAsyncRuntimeGetValueStorage",
            value_storage as unsafe extern "C" fn(*mut c_void) -> *mut u8 as *mut (),
        ),
        (
            "mlirAsyncRuntimeExecute",
            execute as extern "C" fn(*mut c_void, unsafe extern "C" fn(*mut c_void)) as *mut (),
        ),
        (
            "mlirAsyncRuntimeAwaitTokenAndExecute",
            wait_and_execute as Then as *mut (),
        ),
        (
            "mlirAsyncRuntimeAwaitValueAndExecute",
            wait_and_execute as Then as *mut (),
        ),
        (
            "mlirAsyncRuntimeAwaitAllInGroupAndExecute",
            wait_and_execute as Then as *mut (),
        ),
        (
            super::parallel::RUNTIME_ENTRY,
            parallel_for as unsafe extern "C" fn(Body, *mut c_void, i64) as *mut (),
        ),
        // (sic: the API's name lacks an `e`.)
        (
            "mlirAsyncRuntimGetNumWorkerThreads",
            worker_threads as extern "C" fn() -> i64 as *mut (),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::Cell;
    use std::collections::HashMap;

    // Objects alive per creating test (threaded JIT tests create objects concurrently).
    static LIVE: Mutex<Option<HashMap<u64, i64>>> = Mutex::new(None);
    thread_local!(static OWNER: Cell<u64> = const { Cell::new(0) });

    fn live(owner: u64, delta: i64) -> i64 {
        let mut map = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        let n = map
            .get_or_insert_with(HashMap::new)
            .entry(owner)
            .or_default();
        *n += delta;
        *n
    }

    pub fn created() -> u64 {
        let owner = OWNER.with(Cell::get);
        live(owner, 1);
        owner
    }

    pub fn freed(owner: u64) {
        live(owner, -1);
    }

    /// Marks the objects this thread creates from now on as `owner`'s.
    fn own(owner: u64) {
        OWNER.with(|o| o.set(owner));
    }

    /// What a compiled `async.execute` body does: some work, then emplace its token.
    struct Body {
        token: *mut c_void,
        done: AtomicI64,
        fail: bool,
    }

    unsafe extern "C" fn resume(p: *mut c_void) {
        // SAFETY: `p` is a `Body` the test keeps alive until its group completed.
        unsafe {
            let body = &*(p as *const Body);
            std::thread::sleep(Duration::from_micros(50));
            body.done.fetch_add(1, Ordering::SeqCst);
            if body.fail {
                emplace_error(body.token)
            } else {
                emplace_ok(body.token)
            }
        }
    }

    /// `async-parallel-for`'s shape: a group of `n` tasks, each on the pool, then await all.
    /// Returns whether the group reported an error.
    fn fork_join(n: usize, failing: Option<usize>) -> bool {
        let bodies: Vec<Body> = (0..n)
            .map(|i| Body {
                token: create_token(),
                done: AtomicI64::new(0),
                fail: failing == Some(i),
            })
            .collect();
        let group = create_group(n as i64);
        // SAFETY: the objects were created above; the bodies outlive the await.
        unsafe {
            for (i, b) in bodies.iter().enumerate() {
                assert_eq!(add_token_to_group(b.token, group), i as i64);
                execute(b as *const Body as *mut c_void, resume);
                drop_ref(b.token, 1);
            }
            wait(group);
            assert!(bodies.iter().all(|b| b.done.load(Ordering::SeqCst) == 1));
            let error = is_error(group);
            drop_ref(group, 1);
            error
        }
    }

    #[test]
    fn a_group_completes_when_all_its_tasks_did_and_frees_everything() {
        own(1);
        for workers in [0, 1, 3] {
            // With no worker the waiting thread runs the tasks itself.
            ensure_workers(workers).unwrap();
            for n in [1, 2, 7, 64] {
                assert!(!fork_join(n, None));
                assert!(
                    fork_join(n, Some(n / 2)),
                    "an errored token marks its group"
                );
            }
        }
        // Tokens are freed by the task's emplace and the caller's drop, in either order.
        let start = Instant::now();
        while live(1, 0) != 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        assert_eq!(live(1, 0), 0);
    }

    #[test]
    fn continuations_run_once_their_object_completes() {
        own(2);
        let token = create_token();
        let body = Body {
            token: create_token(),
            done: AtomicI64::new(0),
            fail: false,
        };
        let p = &body as *const Body as *mut c_void;
        // SAFETY: the objects were created above and are released below.
        unsafe {
            // Registered before completion: runs on the emplacing thread.
            wait_and_execute(token, p, resume);
            assert_eq!(body.done.load(Ordering::SeqCst), 0);
            emplace_ok(token);
            assert_eq!(body.done.load(Ordering::SeqCst), 1);
            wait(body.token);
            // Registered after completion: runs at once.
            let again = Body {
                token: create_token(),
                done: AtomicI64::new(0),
                fail: false,
            };
            wait_and_execute(token, &again as *const Body as *mut c_void, resume);
            assert_eq!(again.done.load(Ordering::SeqCst), 1);
            for t in [token, body.token, again.token] {
                assert!(!is_error(t));
                drop_ref(t, 1);
            }
            // A value's storage holds its payload until the last reference goes.
            let value = create_value(12);
            value_storage(value).cast::<f32>().add(2).write(1.5);
            emplace_ok(value);
            wait(value);
            assert_eq!(value_storage(value).cast::<f32>().add(2).read(), 1.5);
            drop_ref(value, 1);
        }
        assert_eq!(live(2, 0), 0);
    }

    /// A loop body that counts the runs of each index in the `[AtomicI64]` its context is.
    unsafe extern "C" fn count(ctx: *mut c_void, t: i64) {
        // SAFETY: `ctx` is the test's counter array, longer than any `t` it passes.
        let runs = unsafe { &*(ctx as *const [AtomicI64; 64]) };
        std::thread::sleep(Duration::from_micros(20));
        runs[t as usize].fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn parallel_for_runs_every_index_once_and_frees_its_group() {
        own(3);
        for workers in [0, 1, 3] {
            ensure_workers(workers).unwrap();
            for n in [0, 1, 2, 7, 64] {
                let runs: [AtomicI64; 64] = std::array::from_fn(|_| AtomicI64::new(0));
                // SAFETY: `count` reads the array, which outlives the call.
                unsafe { parallel_for(count, &runs as *const _ as *mut c_void, n) };
                for (t, r) in runs.iter().enumerate() {
                    assert_eq!(
                        r.load(Ordering::SeqCst),
                        i64::from((t as i64) < n),
                        "{t} of {n}"
                    );
                }
            }
        }
        // The last task may drop the group's last reference after the caller returned.
        let start = Instant::now();
        while live(3, 0) != 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        assert_eq!(live(3, 0), 0);
    }
}
