"""What the reliability runs share: the sites and their ranges, the sanitizer markers."""

SITES = [("London", "+442080"), ("Leeds", "+441130"), ("York", "+441904"),
         ("Bristol", "+441170")]
SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
             "SUMMARY: UndefinedBehaviorSanitizer")


def site_range(i, size):
    """Site i's range: (name, first, last), SIZE numbers."""
    city, prefix = SITES[i]
    return city.lower(), f"{prefix}{0:07d}", f"{prefix}{size - 1:07d}"


def in_ranges(number, size):
    return any(len(number) == len(first) and first <= number <= last
               for first, last in (site_range(i, size)[1:] for i in range(len(SITES))))
