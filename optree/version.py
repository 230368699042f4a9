"""Version information of the package."""

__version__ = '0.20.0+reimpl.0.1.0'
__license__ = 'Apache-2.0'
__author__ = 'optree reimplementation authors'
__release__ = True
