import Testing
@testable import SwiftPrune
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A save whose buffered writes fail part-way (the file-size limit, `RLIMIT_FSIZE`,
/// hit while later tensors are still being written) throws, leaves the old
/// destination byte for byte intact and leaves no temporary file: the checks of
/// python/tests/test_io_write_failure.py (which takes the direct path on this
/// machine: tmpfs accepts `O_DIRECT` since Linux 6.6) for the `pwrite` +
/// background `fdatasync` fallback, forced with the test switch
/// ``DataAppender/allowDirect``, and for a direct write refused part-way
/// (misaligned on purpose), after which the rest goes the buffered way.
///
/// Each runs in a child process (an exit test): the limit and the ignored
/// `SIGXFSZ` (without which the kernel kills the writer instead of failing the
/// write with `EFBIG`) must not reach the other tests.
struct BufferedSaveFailureTests {
    #if os(Linux)
    @Test func bufferedWritePastTheFileSizeLimitFailsAndKeepsTheOldFile() async {
        await #expect(processExitsWith: .success) {
            DataAppender.allowDirect = false
            exit(failedSaveProblem())
        }
    }

    @Test func refusedDirectWriteThenBufferedPastTheLimitFailsAndKeepsTheOldFile() async {
        await #expect(processExitsWith: .success) {
            // Data from offset 8 + 4344 (a multiple of 256, not of 512), direct writes allowed at
            // multiples of 256: the kernel refuses the first (EINVAL), the rest go buffered.
            DataAppender.alignment = 256
            let problem = failedSaveProblem(headerReserve: 4344)
            let refused = DataAppender.refusals.load(ordering: .relaxed) > 0
            exit(problem != 0 ? problem : refused || !enforcesDirectAlignment(in: "/tmp") ? 0 : 9)
        }
    }
    #endif

    /// A background `fdatasync` that fails (here: `/dev/null`, which takes writes but
    /// not flushes, EINVAL) fails `finish()` as the final `fsync` would: a system
    /// error with its errno (Python: OSError), not a value error (ValueError before).
    @Test func failedBackgroundFlushIsASystemError() throws {
        let fd = open("/dev/null", O_WRONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        DataAppender.allowDirect = false
        defer { DataAppender.allowDirect = true }
        let appender = DataAppender(fd: fd, base: 0, what: "/dev/null")
        let block = [UInt8](repeating: 7, count: BackgroundFlush.stride)  // one stride: a background flush starts
        try block.withUnsafeBytes { try appender.append($0) }
        let error = try #require(throws: SwiftPruneError.self) { try appender.finish() }
        #expect(error.kind == .system)
        #expect(error.code == EINVAL)
        #expect(error.message.hasPrefix("cannot flush /dev/null: "))
    }
}

/// Saves 48 MiB over an existing small file under a 20 MiB file-size limit
/// (the data section after `headerReserve` bytes of header room); returns 0 when
/// the save threw a write error and left the old file and nothing else, else a
/// code naming what went wrong.
func failedSaveProblem(headerReserve: Int = 4088) -> Int32 {
    guard let directory = makeTemporaryDirectory(prefix: "swiftprune-save-failure") else { return 2 }
    defer { removeTemporaryDirectory(directory) }
    let path = "\(directory)/m.safetensors"
    let old: [Float] = [0, 1, 2, 3, 4]
    do {
        let writer = try SafetensorsWriter(path: path)
        try old.withUnsafeBytes { try writer.add(name: "old", dtype: .float32, shape: [5], bytes: $0) }
        try writer.commit()
    } catch { return 3 }
    let before = fileBytes(path)

    signal(SIGXFSZ, SIG_IGN)
    var limit = rlimit(rlim_cur: 20 << 20, rlim_max: 20 << 20)
    guard setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limit) == 0 else { return 4 }
    let tensor = [Float](repeating: 1, count: 1 << 20)  // 4 MiB each, 12 of them
    do {
        let writer = try SafetensorsWriter(path: path, headerReserve: headerReserve)
        for i in 0 ..< 12 {
            try tensor.withUnsafeBytes { try writer.add(name: "t\(i)", dtype: .float32, shape: [1 << 20], bytes: $0) }
        }
        try writer.commit()
        return 5  // the save did not fail
    } catch let error as SwiftPruneError {
        let message = "\(error)"
        guard message.contains("cannot write"), message.contains("too large") else {
            print("unexpected error:", message)
            return 6
        }
    } catch { return 6 }
    guard fileBytes(path) == before else { return 7 }
    guard directoryEntries(directory) == ["m.safetensors"] else { return 8 }
    return 0
}

/// The bytes of the file at `path` (empty if it cannot be read).
func fileBytes(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard got > 0 else { return out }
        out += chunk[0 ..< got]
    }
}

/// The names in `directory`, sorted, without `.` and `..`.
func directoryEntries(_ directory: String) -> [String] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
