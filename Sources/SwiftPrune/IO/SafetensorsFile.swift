#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors file opened for reading, its header validated.
///
/// Two ways to reach the data:
/// - **read** (the default): the header is read with `pread`, the file stays
///   open, and ``read(_:into:)`` copies one tensor into a caller's buffer.
///   A file truncated or rewritten meanwhile gives an error (or the new
///   bytes), never a signal.
/// - **mapped** (`mapped: true`): the file is memory-mapped and
///   ``tensorBytes(_:)`` returns views into the mapping, valid as long as the
///   file object lives: no tensor is copied or read before it is used. If
///   another process truncates the file while views are in use, touching the
///   lost pages raises SIGBUS (see ``MappedFile``).
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let header: SafetensorsHeader
    /// The mapping (mapped mode only).
    let mapping: MappedFile?
    /// The open descriptor (read mode only).
    private let descriptor: Int32
    /// The file size when the header was read.
    public let fileSize: Int

    /// Opens and validates the file at `path`; maps it when `mapped`.
    /// - Throws: ``SwiftPruneError`` if the file cannot be read, is not a
    ///   regular file or is not a valid safetensors file (see
    ///   ``SafetensorsHeader/parse(file:)``); `.outOfMemory` if its header
    ///   cannot be held in memory.
    public init(path: String, mapped: Bool = true) throws {
        self.path = path
        /// Parse errors name the file.
        func named<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch let error as SwiftPruneError {
                throw SwiftPruneError(error.kind, "\(path): \(error.message)", code: error.code)
            }
        }
        if mapped {
            let mapping = try MappedFile(path: path)
            self.mapping = mapping
            descriptor = -1
            fileSize = mapping.bytes.count
            header = try named { try SafetensorsHeader.parse(file: mapping.bytes) }
        } else {
            mapping = nil
            let (fd, size) = try openRegularFile(path)
            do {
                header = try named { try Self.readHeader(fd, size: size) }
            } catch {
                close(fd)
                throw error
            }
            descriptor = fd
            fileSize = size
        }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Whether tensors are views of a mapping (else they are read on demand).
    public var isMapped: Bool { mapping != nil }

    /// Reads the length field and the header (bounded by the format's limit
    /// and the file size) and parses them.
    private static func readHeader(_ fd: Int32, size: Int) throws -> SafetensorsHeader {
        var first8 = [UInt8](repeating: 0, count: 8)
        let got = try first8.withUnsafeMutableBytes { try preadFully(fd, $0, at: 0) }
        let length = first8.withUnsafeBufferPointer {
            SafetensorsHeader.prefixLength(first8: UnsafeBufferPointer(rebasing: $0[0 ..< got]), fileSize: size)
        }
        let prefix = try FallibleAllocation.allocate(UInt8.self, count: length, "the safetensors header")
        defer { FallibleAllocation.free(prefix) }
        let read = try preadFully(fd, UnsafeMutableRawBufferPointer(start: prefix, count: length), at: 0)
        return try SafetensorsHeader.parse(prefix: UnsafeBufferPointer(start: prefix, count: read), fileSize: size)
    }

    /// Tensors in header order.
    public var entries: [SafetensorsEntry] { header.entries }

    /// The raw little-endian bytes of entry `index` (mapped mode).
    /// - Throws: ``SwiftPruneError`` for a bad index or a file opened for reading.
    public func tensorBytes(_ index: Int) throws -> UnsafeRawBufferPointer {
        let range = try dataRange(index)
        guard let mapping else {
            throw SwiftPruneError.value("\(path) was opened for reading, not mapped: use read(_:into:)")
        }
        guard let base = mapping.bytes.baseAddress, !range.isEmpty else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// Copies the raw little-endian bytes of entry `index` into `out`, which
    /// must have exactly the tensor's byte count. Works in both modes; in
    /// read mode it is a `pread`, so a file truncated since it was opened
    /// gives an error instead of a signal.
    /// - Throws: ``SwiftPruneError`` for a bad index or size, or a failed or short read.
    public func read(_ index: Int, into out: UnsafeMutableRawBufferPointer) throws {
        let range = try dataRange(index)
        guard out.count == range.count else {
            throw SwiftPruneError.value("tensor \"\(header.entries[index].name)\" has \(range.count) bytes, the buffer \(out.count)")
        }
        if range.isEmpty { return }
        if mapping != nil {
            out.copyMemory(from: try tensorBytes(index))
            return
        }
        let got = try preadFully(descriptor, out, at: range.lowerBound)
        guard got == range.count else {
            throw SwiftPruneError.value(
                "\(path): tensor \"\(header.entries[index].name)\" ends past the end of the file: it was truncated after being opened")
        }
    }

    /// The byte range of entry `index` in the file.
    private func dataRange(_ index: Int) throws -> Range<Int> {
        guard index >= 0 && index < header.entries.count else {
            throw SwiftPruneError.value("tensor index \(index) is out of range (\(header.entries.count) tensors)")
        }
        let range = header.entries[index].dataRange
        return header.dataStart + range.lowerBound ..< header.dataStart + range.upperBound
    }

    /// Drops the pages of entry `index` from resident memory (see
    /// ``MappedFile/release(_:)``); the tensor stays readable. Read mode:
    /// nothing is resident, nothing to do.
    public func release(_ index: Int) throws {
        let range = try dataRange(index)
        mapping?.release(range)
    }
}

/// Reads up to `buffer.count` bytes at `offset`, retrying short reads;
/// returns how many were read (fewer only at the end of the file).
func preadFully(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
    guard let base = buffer.baseAddress else { return 0 }
    var done = 0
    while done < buffer.count {
        let got = pread(fd, base + done, min(buffer.count - done, 1 << 30), off_t(offset + done))
        if got < 0 {
            if errno == EINTR { continue }
            throw SwiftPruneError.system("cannot read", errno: errno)
        }
        if got == 0 { break }
        done += got
    }
    return done
}
