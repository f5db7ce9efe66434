import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends the data section of a file being written, past the page cache where it can.
///
/// Why: a buffered write copies every byte into freshly allocated page-cache
/// pages, and a durable save then has those pages written back and, at the
/// next save of the same path, freed again. Measured on a 1 GiB save (perf,
/// ext4 on a virtual disk), that copy is most of the save's CPU time, and it
/// is slow because fresh page-cache pages are cold. With `O_DIRECT` (Linux)
/// the bytes are copied once into one of two reused, aligned buffers of
/// ``chunk`` bytes, and the disk reads them from there: a background thread
/// writes one buffer while the caller fills the other. Durability is
/// unchanged: `O_DIRECT` bypasses the page cache but neither the device's
/// write cache nor the file's metadata, so the final `fsync` of
/// ``TemporaryFile/publish()`` still runs and is what makes the file durable.
///
/// Where `O_DIRECT` is not available (another system, a file system without
/// it, buffers that cannot be allocated) or a direct write is refused with
/// `EINVAL` (an alignment the device does not accept), it writes with
/// `pwrite` into the page cache and flushes in the background with
/// ``BackgroundFlush``, as before; data already handed to a refused direct
/// write are written again that way.
///
/// Callers serialize all calls (the writer's lock).
final class DataAppender: @unchecked Sendable {
    /// Bytes per direct write (and per buffer).
    static let chunk = 8 << 20
    /// File offsets, lengths and buffer addresses of direct writes are multiples
    /// of this (the largest logical block size in common use).
    /// (A variable only so that tests can misalign writes on purpose.)
    nonisolated(unsafe) static var alignment = 4096
    /// Tests set this to `false` to exercise the buffered path on a file system that has `O_DIRECT`.
    nonisolated(unsafe) static var allowDirect = true
    /// How many direct writes were refused and redone buffered (for tests).
    static let refusals = Atomic<Int>(0)

    private let fd: Int32
    /// File offset where the appended data start.
    private let base: Int
    /// What error messages call the file.
    private let what: String
    /// Bytes appended so far.
    private(set) var count = 0

    // Direct mode: two buffers, the one being filled and the one being written.
    private var buffers: [UnsafeMutableRawPointer] = []
    /// Whether writes go past the page cache (cleared for good by a fallback).
    private var direct = false
    /// The first failure; every later call reports it (the file has a gap from then on).
    private var broken: SwiftPruneError?
    private var current = 0
    /// Bytes in the current buffer; its first byte goes to file offset `bufferStart`.
    private var fill = 0
    private var bufferStart = 0
    /// The write in flight (buffer index, file offset, length), kept to redo it buffered after an `EINVAL`.
    private var inFlight: (buffer: Int, offset: Int, length: Int)?
    private let group = DispatchGroup()
    private let failure = Atomic<Int32>(0)

    // Buffered mode.
    private let flush = BackgroundFlush()

    /// Prepares to append at offset `base` of `fd` (an empty file open for writing).
    init(fd: Int32, base: Int, what: String) {
        self.fd = fd
        self.base = base
        self.what = what
        #if os(Linux) && (arch(x86_64) || arch(arm64))
        guard Self.allowDirect else { return }
        var pointers: [UnsafeMutableRawPointer] = []
        for _ in 0 ..< 2 {
            var pointer: UnsafeMutableRawPointer?
            guard posix_memalign(&pointer, Self.alignment, Self.chunk) == 0, let pointer else { break }
            pointers.append(pointer)
        }
        let flags = fcntl(fd, F_GETFL)
        guard pointers.count == 2, flags >= 0, fcntl(fd, F_SETFL, flags | O_DIRECT_FLAG) == 0 else {
            pointers.forEach { free($0) }
            return
        }
        buffers = pointers
        direct = true
        // The first buffer starts at the aligned offset at or before `base`; the bytes
        // before `base` are header room (overwritten at commit), zero until then.
        bufferStart = base / Self.alignment * Self.alignment
        fill = base - bufferStart
        buffers[0].initializeMemory(as: UInt8.self, repeating: 0, count: fill)
        #endif
    }

    deinit {
        group.wait()
        buffers.forEach { free($0) }
    }

    /// Appends `bytes`.
    /// - Throws: ``SwiftPruneError`` if a write (this one or an earlier one in the background) failed.
    func append(_ bytes: UnsafeRawBufferPointer) throws {
        try remembering { try appendOnce(bytes) }
    }

    private func appendOnce(_ bytes: UnsafeRawBufferPointer) throws {
        guard direct else {
            try SafetensorsWriter.writeAll(fd, bytes, at: base + count, what: what)
            flush.wrote(bytes.count, fd: fd)
            count += bytes.count
            return
        }
        var done = 0
        while done < bytes.count {
            let n = min(Self.chunk - fill, bytes.count - done)
            (buffers[current] + fill).copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            fill += n
            done += n
            count += n
            if fill == Self.chunk {
                try submit(length: fill)
                if !direct { return try appendAfterFallback(bytes, from: done) }
            }
        }
    }

    /// Writes what is still buffered and waits for every write; afterwards the file
    /// is exactly `base + count` bytes long and open without `O_DIRECT` (ready for
    /// the header, reads, moves and the final `fsync`).
    /// - Throws: ``SwiftPruneError`` if a write or a background flush failed.
    func finish() throws {
        try remembering { try finishOnce() }
    }

    private func finishOnce() throws {
        if !buffers.isEmpty {  // direct mode was used
            let length = (fill + Self.alignment - 1) / Self.alignment * Self.alignment
            (buffers[current] + fill).initializeMemory(as: UInt8.self, repeating: 0, count: length - fill)
            if length > 0 { try submit(length: length) }
            if direct { try waitForWrite() }
            if direct { try leaveDirectMode() }
            // The last direct write was padded to the alignment.
            guard ftruncate(fd, off_t(base + count)) == 0 else {
                throw SwiftPruneError.system("cannot truncate \(what)", errno: errno)
            }
        }
        let flushError = flush.finish()
        guard flushError == 0 else {
            // A system error with its errno (Python: the OSError subclass), as the final fsync's failure is.
            throw SwiftPruneError.system("cannot flush \(what)", errno: flushError)
        }
    }

    /// Runs `body` unless an earlier call failed; remembers its failure.
    private func remembering(_ body: () throws -> Void) throws {
        if let broken { throw broken }
        do {
            try body()
        } catch let error as SwiftPruneError {
            broken = error
            throw error
        }
    }

    /// Waits for the background work (the file descriptor may be closed afterwards).
    func abandon() {
        group.wait()
        _ = flush.finish()
    }

    // MARK: - direct writes

    /// Hands the current buffer's first `length` bytes to the background thread
    /// (after the previous write ended) and switches to the other buffer.
    private func submit(length: Int) throws {
        try waitForWrite()
        guard direct else {  // the previous write was refused: this buffer goes the buffered way too
            try writeBuffered(buffer: current, offset: bufferStart, length: length)
            bufferStart += length
            fill = 0
            return
        }
        let job = (buffer: current, offset: bufferStart, length: length)
        inFlight = job
        group.enter()
        runInBackground { [self] in
            // `buffers` is not changed after init; the caller fills the other buffer meanwhile.
            let error = Self.writeDirect(fd, buffers[job.buffer], count: job.length, at: job.offset)
            if error != 0 { _ = failure.compareExchange(expected: 0, desired: error, ordering: .relaxed) }
            group.leave()
        }
        current ^= 1
        bufferStart += length
        fill = 0
    }

    /// Waits for the write in flight; after an `EINVAL` (direct I/O refused) writes
    /// its buffer again without `O_DIRECT` and stays in buffered mode.
    private func waitForWrite() throws {
        group.wait()
        guard let job = inFlight else { return }
        inFlight = nil
        let error = failure.exchange(0, ordering: .relaxed)
        guard error != 0 else { return }
        guard error == EINVAL else { throw SwiftPruneError.system("cannot write \(what)", errno: error) }
        Self.refusals.add(1, ordering: .relaxed)
        try leaveDirectMode()
        try writeBuffered(buffer: job.buffer, offset: job.offset, length: job.length)
    }

    /// Clears `O_DIRECT` for good; the buffers stay allocated (one may still hold data) until deinit.
    private func leaveDirectMode() throws {
        #if os(Linux) && (arch(x86_64) || arch(arm64))
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_DIRECT_FLAG) == 0 else {
            throw SwiftPruneError.system("cannot change the open mode of \(what)", errno: errno)
        }
        #endif
        direct = false
    }

    private func writeBuffered(buffer: Int, offset: Int, length: Int) throws {
        try SafetensorsWriter.writeAll(fd, UnsafeRawBufferPointer(start: buffers[buffer], count: length), at: offset, what: what)
        flush.wrote(length, fd: fd)
    }

    /// After a fallback in the middle of ``append(_:)``: the current buffer's bytes
    /// are written buffered, and the rest of `bytes` straight from the caller's memory.
    private func appendAfterFallback(_ bytes: UnsafeRawBufferPointer, from done: Int) throws {
        let rest = UnsafeRawBufferPointer(rebasing: bytes[done...])
        try SafetensorsWriter.writeAll(fd, rest, at: base + count, what: what)
        flush.wrote(rest.count, fd: fd)
        count += rest.count
    }

    /// `pwrite` of all `count` bytes at `offset`; returns 0 or the `errno`.
    private static func writeDirect(_ fd: Int32, _ pointer: UnsafeRawPointer, count: Int, at offset: Int) -> Int32 {
        var done = 0
        while done < count {
            let written = pwrite(fd, pointer + done, count - done, off_t(offset + done))
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if written == 0 { return EIO }
            done += written
        }
        return 0
    }
}

#if os(Linux) && arch(x86_64)
/// Linux `O_DIRECT`, which Swift does not import (its value depends on the architecture).
let O_DIRECT_FLAG: Int32 = 0o40000
#elseif os(Linux) && arch(arm64)
let O_DIRECT_FLAG: Int32 = 0o200000
#endif
