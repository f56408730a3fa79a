// Placeholder: implemented in the next commits.
#include "push/ts.h"
