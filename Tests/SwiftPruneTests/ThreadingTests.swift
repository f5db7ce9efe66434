import Dispatch
import Synchronization
import Testing
@testable import SwiftPrune

/// `parallelForThrowing`: every worker runs, and the error thrown is the one of
/// the lowest-numbered failing worker, whatever order the workers finish in.
struct ParallelForThrowingTests {
    struct WorkerError: Error, Equatable { let worker: Int }

    /// Runs `workers` workers in which those of `failing` throw; returns the
    /// workers that ran to their end (all of them: a failure stops only its own
    /// worker) and the error thrown.
    func run(workers: Int, failing: Set<Int>) -> (ran: [Int], error: WorkerError?) {
        let ran = Mutex<[Int]>([])
        do {
            try parallelForThrowing(workers: workers) { worker in
                ran.withLock { $0.append(worker) }
                if failing.contains(worker) { throw WorkerError(worker: worker) }
            }
            return (ran.withLock { $0.sorted() }, nil)
        } catch let error as WorkerError {
            return (ran.withLock { $0.sorted() }, error)
        } catch {
            Issue.record("unexpected error \(error)")
            return ([], nil)
        }
    }

    @Test(arguments: [1, 2, 3, 8])
    func noErrorRunsEveryWorkerOnce(workers: Int) {
        let result = run(workers: workers, failing: [])
        #expect(result.error == nil)
        #expect(result.ran == Array(0 ..< workers))
    }

    @Test(arguments: [1, 2, 3, 8])
    func oneFailingWorkerIsRethrown(workers: Int) {
        for failing in 0 ..< workers {
            let result = run(workers: workers, failing: [failing])
            #expect(result.error == WorkerError(worker: failing))
            #expect(result.ran == Array(0 ..< workers))
        }
    }

    /// Several failures: the lowest worker's, every time (a later worker's error
    /// must not win because its thread happened to finish first).
    @Test func severalFailuresGiveTheLowestWorkersError() {
        for _ in 0 ..< 50 {
            #expect(run(workers: 8, failing: [5, 2, 7]).error == WorkerError(worker: 2))
            #expect(run(workers: 4, failing: [0, 1, 2, 3]).error == WorkerError(worker: 0))
        }
    }

    /// Worker 2 fails before worker 1 (which waits for it): worker 1's error is
    /// the one thrown.
    @Test func errorOrderIsByWorkerNotByTime() {
        let laterFailed = Atomic<Int>(0)
        do {
            try parallelForThrowing(workers: 3) { worker in
                if worker == 1 {
                    // Fail only after the other two have failed (or given up waiting).
                    var spins = 0
                    while laterFailed.load(ordering: .acquiring) < 2 && spins < 50_000_000 { spins += 1 }
                    throw WorkerError(worker: 1)
                }
                laterFailed.add(1, ordering: .releasing)   // workers 0 and 2
                if worker == 2 { throw WorkerError(worker: 2) }
            }
            Issue.record("no error thrown")
        } catch let error as WorkerError {
            #expect(error == WorkerError(worker: 1))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    /// `workers <= 1` runs the body once, as worker 0, on the calling thread.
    @Test(arguments: [0, 1])
    func singleWorkerRunsInline(workers: Int) throws {
        var calls: [Int] = []
        try parallelForThrowing(workers: workers) { worker in calls.append(worker) }
        #expect(calls == [0])
        #expect(throws: WorkerError(worker: 0)) {
            try parallelForThrowing(workers: workers) { worker in throw WorkerError(worker: worker) }
        }
    }

    /// The thrown error keeps its type and message (the kernels' SwiftPruneError reaches the C ABI unchanged).
    @Test func swiftPruneErrorPassesThroughUnchanged() {
        do {
            try parallelForThrowing(workers: 2) { worker in
                if worker == 1 { throw SwiftPruneError(.outOfMemory, "cannot allocate 64 bytes for test scratch") }
            }
            Issue.record("no error thrown")
        } catch let error as SwiftPruneError {
            #expect(error.kind == .outOfMemory)
            #expect("\(error)".contains("cannot allocate 64 bytes for test scratch"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}

/// `parallelFor` on the worker pool: every index runs exactly once, however
/// many jobs are posted at once, nested or from several threads.
struct ParallelForPoolTests {
    /// The indices `parallelFor(workers:)` ran, each as many times as it ran.
    func indicesRun(workers: Int) -> [Int] {
        let ran = Mutex<[Int]>([])
        parallelFor(workers: workers) { worker in ran.withLock { $0.append(worker) } }
        return ran.withLock { $0.sorted() }
    }

    @Test(arguments: [2, 3, 4, 7, 16])
    func everyIndexRunsOnce(workers: Int) {
        for _ in 0 ..< 200 { #expect(indicesRun(workers: workers) == Array(0 ..< workers)) }
    }

    /// A `parallelFor` inside a worker (a second job posted while the first runs) finishes.
    @Test func nestedCallsFinish() {
        let ran = Mutex<[Int]>([])
        parallelFor(workers: 3) { outer in
            parallelFor(workers: 4) { inner in ran.withLock { $0.append(outer * 4 + inner) } }
        }
        #expect(ran.withLock { $0.sorted() } == Array(0 ..< 12))
    }

    /// Calls from several threads at once (as from Python threads, the GIL released) each finish with every index.
    @Test func concurrentCallersEachGetEveryIndex() {
        let wrong = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            for round in 0 ..< 100 {
                let workers = 2 + (caller + round) % 5
                if indicesRun(workers: workers) != Array(0 ..< workers) { wrong.add(1, ordering: .relaxed) }
            }
        }
        #expect(wrong.load(ordering: .relaxed) == 0)
    }
}
