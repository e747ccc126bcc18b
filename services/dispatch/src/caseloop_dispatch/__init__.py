"""dispatch — assignment (交办): routes judged cases to the responsible unit and takes its answers."""
