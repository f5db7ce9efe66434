#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The text of the C `errno` value `code`.
func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}

/// Opens `path` read-only and checks that it is a regular file, returning
/// the descriptor and the file's size. `O_NONBLOCK` keeps `open` from
/// waiting forever on a FIFO (it has no effect on regular files); a FIFO,
/// socket, device or directory is refused with a clear error.
func openRegularFile(_ path: String) throws -> (Int32, Int) {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { throw SwiftPruneError.system("cannot open \(path)", errno: errno) }
    var info = stat()
    guard fstat(fd, &info) == 0 else {
        let code = errno
        close(fd)
        throw SwiftPruneError.system("cannot stat \(path)", errno: code)
    }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        close(fd)
        throw SwiftPruneError.system("cannot read \(path)", errno: EISDIR)
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
        close(fd)
        throw SwiftPruneError.value("\(path) is not a regular file (a FIFO, socket, device or directory cannot be read as weights)")
    }
    return (fd, Int(info.st_size))
}

/// A whole regular file mapped read-only into memory; unmapped on deinit.
///
/// Pages are read from disk when first touched, so opening a large file is
/// cheap. The mapping is private and read-only: nothing can write through it.
/// As with any mapping, a file truncated or rewritten in place by another
/// process while mapped makes access to the lost pages raise SIGBUS, which
/// ends the process: mapping is therefore opt-in (``SafetensorsFile`` reads
/// by default). swiftprune's own writers replace files by rename, which
/// never does that to a mapping.
public final class MappedFile: @unchecked Sendable {
    /// The mapped bytes (empty for an empty file).
    public let bytes: UnsafeBufferPointer<UInt8>

    /// Maps the file at `path`.
    /// - Throws: ``SwiftPruneError`` (`.system`, with the `errno`) if it cannot be
    ///   opened, is a directory or cannot be mapped; `.invalidValue` if it is
    ///   another kind of non-regular file.
    public init(path: String) throws {
        let (fd, size) = try openRegularFile(path)
        defer { close(fd) }
        if size == 0 {
            bytes = UnsafeBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
              address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SwiftPruneError.system("cannot map \(path) into memory", errno: errno)
        }
        bytes = UnsafeBufferPointer(start: address.assumingMemoryBound(to: UInt8.self), count: size)
    }

    /// Tells the kernel that the pages of `range` are not needed for now, so
    /// they leave this process's resident memory; reading them again later
    /// reloads them from the file. `range` is clamped to the file.
    public func release(_ range: Range<Int>) {
        guard let base = bytes.baseAddress else { return }
        let page = max(1, Int(sysconf(Int32(_SC_PAGESIZE))))
        // Only whole pages inside the range: neighbours may still be in use.
        let lower = (max(0, range.lowerBound) + page - 1) / page * page
        let upper = min(bytes.count, range.upperBound) / page * page
        guard upper > lower else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + lower), upper - lower, Int32(MADV_DONTNEED))
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }
}
