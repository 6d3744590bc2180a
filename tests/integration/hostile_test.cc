// Placeholder: the hostile-peer and operator-mistake cases of issue 8 land here.
