#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A file being written next to its destination, published atomically.
///
/// Where the file system supports it (Linux `O_TMPFILE`: ext4, xfs, btrfs,
/// tmpfs...) the file has no name at all until ``publish(keepingModeOf:)``
/// links it under a temporary name and renames that over the destination
/// in one step, so a process killed while writing leaves nothing behind.
/// Elsewhere the file is created as `.NAME.<pid>.<n>.tmp`; every new
/// temporary file first removes such files of processes that no longer run
/// (``removeStaleTemporaries(besides:)``), so a killed writer's leftovers
/// last only until the next write to the same path.
struct TemporaryFile {
    let descriptor: Int32
    /// The temporary name, or `nil` for an anonymous (`O_TMPFILE`) file.
    private(set) var name: String?
    /// The final path (symbolic links already resolved).
    let destination: String

    private static let counter = Atomic<Int>(0)

    /// Creates an empty temporary file in the directory of `destination`.
    /// - Throws: ``SwiftPruneError`` if the directory is not writable.
    static func create(besides destination: String) throws -> TemporaryFile {
        guard !destination.isEmpty, destination.last != "/" else {
            throw SwiftPruneError.value("invalid file path \"\(destination)\"")
        }
        removeStaleTemporaries(besides: destination)
        let directory = directory(of: destination)
        #if os(Linux)
        // /proc/self/fd is how the anonymous file gets linked later.
        if access("/proc/self/fd", X_OK) == 0 {
            let fd = open(directory, O_TMPFILE_FLAG | O_RDWR | O_CLOEXEC, mode_t(0o666))
            if fd >= 0 { return TemporaryFile(descriptor: fd, name: nil, destination: destination) }
        }
        #endif
        let (fd, name) = try createNamed(besides: destination)
        return TemporaryFile(descriptor: fd, name: name, destination: destination)
    }

    /// Closes and removes the file (nothing to remove for an anonymous one).
    func discard() {
        close(descriptor)
        if let name { unlink(name) }
    }

    /// Flushes the file, gives it the mode (and owner, where permitted) of
    /// the file it replaces, and renames it over ``destination``; then
    /// flushes the directory. The descriptor is closed on return.
    /// - Throws: ``SwiftPruneError`` if a flush, link or rename fails; the
    ///   destination is then untouched and the temporary file removed.
    func publish() throws {
        var linked: String? = name
        defer {
            close(descriptor)
            if let linked { unlink(linked) }  // fails harmlessly once renamed
        }
        var existing = stat()
        if stat(destination, &existing) == 0 && (existing.st_mode & S_IFMT) == S_IFREG {
            // Owner first: chown may clear the mode's set-id bits.
            _ = fchown(descriptor, existing.st_uid, existing.st_gid)
            _ = fchmod(descriptor, existing.st_mode & 0o777)
        }
        guard fsync(descriptor) == 0 else {
            throw SwiftPruneError.system("cannot flush the temporary file for \(destination)", errno: errno)
        }
        if linked == nil {
            // Give the anonymous file a (temporary, stale-cleanable) name, then rename it.
            while true {
                let candidate = Self.candidateName(besides: destination)
                if linkat(AT_FDCWD, "/proc/self/fd/\(descriptor)", AT_FDCWD, candidate, AT_SYMLINK_FOLLOW) == 0 {
                    linked = candidate
                    break
                }
                if errno != EEXIST {
                    throw SwiftPruneError.system("cannot link the temporary file for \(destination)", errno: errno)
                }
            }
        }
        guard rename(linked!, destination) == 0 else {
            throw SwiftPruneError.system("cannot rename the temporary file to \(destination)", errno: errno)
        }
        linked = nil
        let directory = open(Self.directory(of: destination), O_RDONLY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            close(directory)
        }
    }

    // MARK: - names

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    static func baseName(of path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }

    /// `<dir>/.<name>.<pid>.<n>.tmp`, unique within this process.
    private static func candidateName(besides path: String) -> String {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue
        return "\(directory(of: path))/.\(baseName(of: path)).\(getpid()).\(n).tmp"
    }

    /// Creates `.<name>.<pid>.<n>.tmp` next to `path`, exclusively.
    static func createNamed(besides path: String) throws -> (Int32, String) {
        while true {
            let candidate = candidateName(besides: path)
            let fd = open(candidate, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(0o666))
            if fd >= 0 { return (fd, candidate) }
            if errno != EEXIST {
                throw SwiftPruneError.system("cannot create a file in \(directory(of: path))", errno: errno)
            }
        }
    }

    /// Removes `.<name>.<pid>.<n>.tmp` files next to `path` whose process
    /// `pid` no longer exists (a writer killed before it could clean up).
    /// Files of running processes, and names that do not match exactly, are
    /// left alone. (A process id reused since then keeps its file until that
    /// process ends too.)
    static func removeStaleTemporaries(besides path: String) {
        let directory = directory(of: path)
        let prefix = ".\(baseName(of: path))."
        guard let stream = opendir(directory) else { return }
        defer { closedir(stream) }
        let me = getpid()
        while let entry = readdir(stream) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let bytes = raw.bindMemory(to: UInt8.self)
                let end = bytes.firstIndex(of: 0) ?? bytes.count
                return String(decoding: bytes[0 ..< end], as: UTF8.self)
            }
            guard entryName.hasPrefix(prefix), entryName.hasSuffix(".tmp") else { continue }
            let middle = entryName.dropFirst(prefix.count).dropLast(4).split(separator: ".", omittingEmptySubsequences: false)
            guard middle.count == 2, let pid = Int32(middle[0]), pid > 0, Int(middle[1]) != nil, pid != me else { continue }
            if kill(pid, 0) == -1 && errno == ESRCH {
                unlink("\(directory)/\(entryName)")
            }
        }
    }

    /// `path` with symbolic links followed (up to 40), so that writing "to a
    /// link" replaces the file it points to and keeps the link. A dangling
    /// link resolves to where its target would be.
    static func resolvingSymlinks(_ path: String) -> String {
        var current = path
        for _ in 0 ..< 40 {
            var info = stat()
            guard lstat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let length = readlink(current, &buffer, Int(PATH_MAX))
            guard length > 0 else { return current }
            let target = String(decoding: buffer[0 ..< length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            current = target.hasPrefix("/") ? target : "\(directory(of: current))/\(target)"
        }
        return current
    }
}

#if os(Linux)
/// Linux `O_TMPFILE` (`__O_TMPFILE | O_DIRECTORY`), which Swift does not import.
let O_TMPFILE_FLAG: Int32 = 0o20000000 | O_DIRECTORY
#endif
