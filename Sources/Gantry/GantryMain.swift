import CSystemTuning
import GantryCommands
import Logging

/// The `gantry` executable: sets process-wide behaviour once, then hands over to the CLI.
@main
struct GantryMain {
    static func main() async {
        // Model uploads to S3 go through multi-megabyte part buffers. glibc raises its mmap
        // threshold after the first such buffer is freed and from then on carves them from
        // per-thread arenas that it rarely returns, so resident memory grew by several parts.
        // A fixed threshold keeps every buffer of 1 MiB or more in its own mapping, handed back
        // to the system as soon as it is freed (bench/upload.sh measures the difference).
        _ = gantry_set_mmap_threshold(1 << 20)
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
        await GantryCommand.main()
    }
}
