"""Property-based (hypothesis) fuzzing of untrusted inputs such as the policy document."""
