"""Small, faithful programs that do loginflow's job another way, plus the consume ceiling."""
