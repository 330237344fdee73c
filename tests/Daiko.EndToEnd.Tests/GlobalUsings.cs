global using Xunit;

// Two streams of tests at once, one a core: the tests that open a PKCS#11 token in this process in one (SecondStream), every other test
// (the benchmarks' quick runs among them) in the other, each stream one test at a time. Most of these tests wait on
// the processes they start, so the two keep both cores busy where one stream left one idle. The streams take about
// as long as each other: the hosted tests with their fixtures' set-ups weigh about what the rest do.
[assembly: CollectionBehavior(CollectionBehavior.CollectionPerAssembly, MaxParallelThreads = 2)]

namespace Daiko.EndToEnd.Tests
{
    /// <summary>
    /// The collection run beside the rest, one test at a time: the hosted deployment's tests and the purse crash test. Every
    /// test that opens a PKCS#11 token in this process belongs here (the process holds one module at a time, and opening it
    /// sets SOFTHSM2_CONF for the whole process).
    /// </summary>
    [CollectionDefinition(Name)]
    public static class SecondStream
    {
        public const string Name = "hosted deployment";
    }
}
