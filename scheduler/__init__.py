"""sparring: meeting and calendar orchestration for sparring forums."""
