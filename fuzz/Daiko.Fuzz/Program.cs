using Daiko.Fuzz;
using SharpFuzz;

// daiko-fuzz: the fuzz targets of Daiko's parsers.
//   run TARGET                 under afl-fuzz (SharpFuzz's persistent out-of-process loop); once otherwise
//   replay TARGET [PATH...]    runs files (or every file of directories; default fuzz/corpus/TARGET) in-process; exit 1 on a finding
//   seed TARGET DIR RFC8448    writes seed inputs made from real messages to DIR
//   list                       names the targets
if (args is ["run", var name])
{
    // Under fuzz/run.sh the harness itself is instrumented: nothing of it may run before SharpFuzz has
    // set up afl's coverage map, so the target is looked up inside the loop.
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        (FuzzTargets.Find(name) ?? throw new ArgumentException($"no fuzz target '{name}'")).Execute(buffer.ToArray());
    });
    return 0;
}
if (args is ["list"])
{
    foreach (var t in FuzzTargets.All) Console.WriteLine($"{t.Name}\t{t.Description}");
    return 0;
}
if (args.Length < 2 || FuzzTargets.Find(args[1]) is not { } target)
{
    Console.Error.WriteLine("usage: Daiko.Fuzz run|replay|seed TARGET ... (targets: " + string.Join(", ", FuzzTargets.All.Select(t => t.Name)) + ")");
    return 2;
}
switch (args[0])
{
    case "replay":
    {
        var verbose = Environment.GetEnvironmentVariable("DAIKO_FUZZ_VERBOSE") == "1";
        try
        {
            Console.WriteLine(CorpusReplay.Run(target, args.Length > 2 ? args[2..] : [CorpusReplay.CorpusDirectory(target.Name)], verbose ? Console.WriteLine : null));
            return 0;
        }
        catch (FuzzFinding e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
    }
    case "seed" when args.Length == 4:
    {
        Directory.CreateDirectory(args[2]);
        var n = 0;
        foreach (var seed in Seeds.For(target.Name, args[3]))
        {
            File.WriteAllBytes(Path.Combine(args[2], $"seed-{n++:D3}"), seed);
        }
        Console.WriteLine($"{target.Name}: {n} seeds in {args[2]}");
        return 0;
    }
    default:
        Console.Error.WriteLine("usage: Daiko.Fuzz run|replay|seed TARGET ...");
        return 2;
}
