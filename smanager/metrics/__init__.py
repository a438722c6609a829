"""The monitor service's engine: collectors' schedules, readers of /proc and of what
other programs expose, the sample store, alerts and export formats.  See the
README's "Monitoring".
"""
