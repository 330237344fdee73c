namespace Daiko.Fuzz;

/// <summary>What replaying a corpus found: every input was accepted or refused as expected.</summary>
public sealed record ReplayReport(string Target, int Inputs, int Accepted, int Refused)
{
    public override string ToString() => $"{Target}: {Inputs} inputs, {Accepted} accepted, {Refused} refused, 0 findings";
}

/// <summary>Runs committed corpus files through their target in-process, as the test suite does after every change.</summary>
public static class CorpusReplay
{
    /// <summary>fuzz/corpus/TARGET of the source tree this assembly was built from (found by walking up from the build output).</summary>
    public static string CorpusDirectory(string target)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "fuzz", "corpus", target);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"fuzz/corpus/{target} not found above {AppContext.BaseDirectory}");
    }

    /// <summary>
    /// Replays <paramref name="paths"/> (files, or every file of directories) through the target; a
    /// finding throws, naming the input file. <paramref name="log"/> hears of each refusal when given.
    /// </summary>
    public static ReplayReport Run(FuzzTarget target, IEnumerable<string> paths, Action<string>? log = null)
    {
        var files = paths.SelectMany(p => Directory.Exists(p) ? Directory.EnumerateFiles(p) : [p]).Order(StringComparer.Ordinal).ToList();
        int accepted = 0, refused = 0;
        foreach (var file in files)
        {
            bool ok;
            Exception? refusal;
            try
            {
                ok = target.Execute(File.ReadAllBytes(file), out refusal);
            }
            catch (Exception e)
            {
                throw new FuzzFinding($"{target.Name} input {file} ({Convert.ToHexString(File.ReadAllBytes(file).AsSpan(0, Math.Min(64, (int)new FileInfo(file).Length)))}...): {e}");
            }
            if (ok) accepted++;
            else
            {
                refused++;
                log?.Invoke($"{file}: refused: {refusal!.GetType().Name}: {refusal.Message}");
            }
        }
        return new ReplayReport(target.Name, files.Count, accepted, refused);
    }

    /// <summary>Replays the committed corpus of the target named <paramref name="name"/>.</summary>
    public static ReplayReport Run(string name) =>
        Run(FuzzTargets.Find(name) ?? throw new ArgumentException($"no fuzz target '{name}'", nameof(name)), [CorpusDirectory(name)]);
}
