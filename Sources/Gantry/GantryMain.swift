import GantryCommands
import Logging

/// The `gantry` executable: bootstraps process-wide logging once, then hands over to the CLI.
@main
struct GantryMain {
    static func main() async {
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
        await GantryCommand.main()
    }
}
