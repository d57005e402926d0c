"""Attack suite, utility and bias evaluation, paired intervals, reports and plots."""
