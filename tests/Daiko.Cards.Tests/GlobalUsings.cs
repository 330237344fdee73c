global using Daiko.Cards.Diagnostics;
global using Xunit;
[assembly: CollectionBehavior(DisableTestParallelization = true)]
